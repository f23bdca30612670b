package doctor

import "strings"

// Storage driver names, as config.Storage.Driver spells them.
const (
	driverAuto    = "auto"
	driverOverlay = "overlay"
	driverFuse    = "fuse-overlayfs"
	driverVFS     = "vfs"
)

func (r *run) checkOverlay() Check {
	title := "overlay in a user namespace"
	if r.h.rootful() {
		title = "native overlay"
	}
	c := Check{ID: IDOverlay, Title: title}
	driver := r.cfg.Storage.Driver
	if driver == "" {
		driver = driverAuto
	}
	if driver != driverAuto && driver != driverOverlay {
		c.Detail = "not probed: storage driver " + driver + " is configured"
		return c
	}
	if r.h.Probes.OverlayInUserNS == nil {
		c.Status = Warn
		c.Detail = "not probed"
		return c
	}
	if err := r.h.Probes.OverlayInUserNS(); err != nil {
		c.Status = Warn
		c.Detail = "native overlay does not mount: " + err.Error() +
			" (unprivileged overlay needs Linux 5.11 or later, on a filesystem overlay accepts as upper layer)"
		if driver == driverOverlay {
			c.Detail += "; the configured storage driver overlay will fail"
			c.Fix = "crib serve --storage-driver=auto"
		}
		return c
	}
	r.f.OverlayInUserNS = true
	c.Detail = "native overlay mounts"
	if !r.h.rootful() {
		c.Detail += " inside a user namespace"
	}
	return c
}

func (r *run) checkFuseOverlayfs() Check {
	c := Check{ID: IDFuseOverlayfs, Title: "fuse-overlayfs"}
	p := r.h.findProgram(driverFuse, "")
	exeProblem := p.Problem
	var problems []string
	var fixes []string
	if p.Problem != "" {
		problems = append(problems, p.Problem)
		fixes = append(fixes, r.programFix(p, exeProblem, driverFuse, "", false))
	} else {
		r.found(p)
	}
	if !r.h.rootful() {
		if prob := r.h.deviceProblem("/dev/fuse"); prob != "" {
			problems = append(problems, prob)
			fixes = append(fixes, r.deviceFix("/dev/fuse", "fuse", prob))
		}
	}
	r.f.FuseOverlayfs = len(problems) == 0
	r.f.StorageDriver = r.storageDriver()

	switch {
	case len(problems) == 0:
		c.Detail = p.Path + " (storage driver: " + r.f.StorageDriver + ")"
	case r.f.StorageDriver == driverOverlay || r.f.StorageDriver == driverVFS:
		// The driver in use does not need it: report, do not warn.
		c.Detail = "not needed with storage driver " + r.f.StorageDriver + " (" + strings.Join(problems, "; ") + ")"
		if r.cfg.Storage.Driver != driverVFS && r.f.StorageDriver == driverVFS {
			c.Status = Warn
			c.Detail = strings.Join(problems, "; ") + ": storage falls back to vfs, which copies every layer (slow, disk-hungry)"
			c.Fix = and(fixes...)
		}
	default: // fuse-overlayfs configured but unusable
		c.Status = Warn
		c.Detail = strings.Join(problems, "; ") + ": the configured storage driver fuse-overlayfs will fail"
		c.Fix = and(fixes...)
	}
	return c
}

// storageDriver is what the storage package will use: the configured
// driver, or for auto the first of overlay, fuse-overlayfs, vfs that works.
func (r *run) storageDriver() string {
	switch d := r.cfg.Storage.Driver; {
	case d != "" && d != driverAuto:
		return d
	case r.f.OverlayInUserNS:
		return driverOverlay
	case r.f.FuseOverlayfs:
		return driverFuse
	}
	return driverVFS
}

// deviceFix makes a device node usable by the user: load the module that
// creates it, or open up its mode (0666 is what most distributions ship;
// the device itself checks what a caller may do with it).
func (r *run) deviceFix(dev, module, problem string) string {
	if strings.HasSuffix(problem, "does not exist") {
		return r.fix.sudo("modprobe " + module)
	}
	return r.fix.sudo("chmod 0666 " + dev)
}
