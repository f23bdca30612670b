package storage

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/crib-dev/crib/internal/errdefs"
	cstorage "go.podman.io/storage"
	"go.podman.io/storage/drivers/overlay"
	"go.podman.io/storage/types"
)

// Driver names crib's configuration accepts.
const (
	DriverAuto          = "auto"
	DriverOverlay       = "overlay"
	DriverFuseOverlayfs = "fuse-overlayfs"
	DriverVFS           = "vfs"
)

// openWithDriver opens the store with the driver requested by crib's
// configuration, by storage.conf, or found to work here.
func openWithDriver(requested string, base types.StoreOptions) (cstorage.Store, DriverChoice, error) {
	if requested != "" && requested != DriverAuto {
		return openForced(requested, base, "set by crib's storage driver setting")
	}
	if name := storageConfDriver(base); name != "" {
		return openForced(name, base, "named by storage.conf")
	}
	return openFirstWorking(base)
}

// storageConfDriver is the driver storage.conf insists on, or "" when it
// leaves the choice open (no driver, or overlay without a mount program:
// crib still falls back to fuse-overlayfs and vfs then).
func storageConfDriver(base types.StoreOptions) string {
	switch base.GraphDriverName {
	case "":
		return ""
	case "overlay", "overlay2":
		if mountProgram(base.GraphDriverOptions) != "" {
			return DriverFuseOverlayfs
		}
		return ""
	default:
		return base.GraphDriverName
	}
}

func openForced(name string, base types.StoreOptions, why string) (cstorage.Store, DriverChoice, error) {
	opts, reason, err := driverOptions(name, base)
	if err != nil {
		return nil, DriverChoice{}, fmt.Errorf("storage: driver %s (%s): %w", name, why, err)
	}
	cs, err := cstorage.GetStore(opts)
	if err != nil {
		return nil, DriverChoice{}, fmt.Errorf("storage: opening store with driver %s (%s): %w", name, why, err)
	}
	return cs, DriverChoice{Name: name, Reason: why + "; " + reason}, nil
}

// openFirstWorking tries native overlay, then fuse-overlayfs, then vfs.
func openFirstWorking(base types.StoreOptions) (cstorage.Store, DriverChoice, error) {
	var refused []string
	for _, name := range []string{DriverOverlay, DriverFuseOverlayfs} {
		opts, reason, err := driverOptions(name, base)
		if err != nil {
			refused = append(refused, name+": "+err.Error())
			continue
		}
		cs, err := cstorage.GetStore(opts)
		if err != nil {
			refused = append(refused, name+": "+err.Error())
			continue
		}
		return cs, DriverChoice{Name: name, Reason: reason}, nil
	}
	opts, _, _ := driverOptions(DriverVFS, base)
	cs, err := cstorage.GetStore(opts)
	if err != nil {
		return nil, DriverChoice{}, fmt.Errorf("storage: opening store with driver vfs: %w", err)
	}
	reason := "slow fallback (full copies, no sharing of unpacked layers between containers): " + strings.Join(refused, "; ")
	return cs, DriverChoice{Name: DriverVFS, Reason: reason}, nil
}

// driverOptions prepares the store options for one driver, or says why it
// cannot work here.
func driverOptions(name string, base types.StoreOptions) (types.StoreOptions, string, error) {
	switch name {
	case DriverOverlay:
		if ok, why := nativeOverlayWorks(base); !ok {
			return base, "", fmt.Errorf("%w: native overlay is not usable: %s", errdefs.ErrFailedPrecondition, why)
		}
		return withDriver(base, "overlay", ""), "the kernel mounts overlay here", nil
	case DriverFuseOverlayfs:
		prog, err := fuseOverlayfsProgram(base)
		if err != nil {
			return base, "", fmt.Errorf("%w: %v", errdefs.ErrFailedPrecondition, err)
		}
		return withDriver(base, "overlay", prog), "overlay through " + prog, nil
	default:
		return withDriver(base, name, ""), "", nil
	}
}

// nativeOverlayWorks asks the storage library, which test-mounts an
// overlay in the graph root (and remembers a store that needs a mount
// program, whose layers kernel overlay cannot read).
func nativeOverlayWorks(base types.StoreOptions) (bool, string) {
	home := filepath.Join(base.GraphRoot, "overlay")
	runhome := filepath.Join(base.RunRoot, "overlay")
	if os.Geteuid() != 0 {
		return false, "mounting needs uid 0 in a user namespace"
	}
	ok, err := overlay.SupportsNativeOverlay(home, runhome)
	if err != nil {
		return false, err.Error()
	}
	if ok {
		return true, ""
	}
	if flag, err := os.ReadFile(filepath.Join(home, ".has-mount-program")); err == nil && strings.TrimSpace(string(flag)) == "true" {
		return false, "this store's layers were written by fuse-overlayfs"
	}
	return false, "a test overlay mount failed (kernel older than 5.13 in a user namespace, or an unsuitable file system)"
}

// fuseOverlayfsProgram finds the mount program storage.conf names, else
// fuse-overlayfs in PATH, and checks the FUSE device is usable.
func fuseOverlayfsProgram(base types.StoreOptions) (string, error) {
	prog := mountProgram(base.GraphDriverOptions)
	if prog == "" {
		found, err := exec.LookPath("fuse-overlayfs")
		if err != nil {
			return "", errors.New("fuse-overlayfs is not installed (not in PATH)")
		}
		prog = found
	}
	if _, err := os.Stat(prog); err != nil {
		return "", fmt.Errorf("mount program: %w", err)
	}
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("fuse-overlayfs needs /dev/fuse: %w", err)
	}
	dev.Close()
	return prog, nil
}

// withDriver returns base set for one driver: other drivers' options and
// any mount program dropped, the given mount program added.
func withDriver(base types.StoreOptions, name, mountProg string) types.StoreOptions {
	opts := base
	opts.GraphDriverName = name
	opts.GraphDriverPriority = nil
	opts.GraphDriverOptions = nil
	for _, o := range base.GraphDriverOptions {
		drv, key, _ := splitDriverOption(o)
		if key == "mount_program" || !optionFitsDriver(name, drv, key) {
			continue
		}
		opts.GraphDriverOptions = append(opts.GraphDriverOptions, o)
	}
	if mountProg != "" {
		opts.GraphDriverOptions = append(opts.GraphDriverOptions, "overlay.mount_program="+mountProg)
	}
	return opts
}

// optionFitsDriver keeps prefixed options of the driver and unprefixed
// ones the driver accepts; vfs refuses unknown unprefixed keys.
func optionFitsDriver(name, drv, key string) bool {
	if drv != "" {
		return drv == name || (name == "overlay" && drv == "overlay2")
	}
	if name == "vfs" {
		return key == "imagestore" || key == "ignore_chown_errors"
	}
	return true
}

// mountProgram is the mount_program among the driver options, if any.
func mountProgram(options []string) string {
	for _, o := range options {
		drv, key, val := splitDriverOption(o)
		if key == "mount_program" && (drv == "" || drv == "overlay" || drv == "overlay2") {
			return val
		}
	}
	return ""
}

// splitDriverOption splits "overlay.mount_program=/x" into its driver,
// key and value (the storage library's option syntax).
func splitDriverOption(o string) (drv, key, val string) {
	key, val, _ = strings.Cut(o, "=")
	key = strings.ToLower(strings.TrimSpace(key))
	if d, k, ok := strings.Cut(key, "."); ok {
		drv, key = d, k
	}
	return drv, key, strings.TrimSpace(val)
}
