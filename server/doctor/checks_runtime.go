package doctor

import (
	"fmt"
	"strings"
)

// runtimeNames are the OCI runtimes crib offers as handlers, in the order
// "auto" prefers them: crun runs and execs containers in a third of runc's
// time, so it comes first wherever it works.
func runtimeNames() []string { return []string{IDCrun, IDRunc} }

func (r *run) checkRuntime(name, configured string) Check {
	c := Check{ID: name, Title: name}
	p := r.h.findProgram(name, configured)
	exeProblem := p.Problem
	version := r.h.version(&p)
	if p.Path == "" || p.Problem != "" {
		c.Status = Warn
		c.Detail = p.Problem
		c.Fix = r.programFix(p, exeProblem, name, "--"+name+"-path", configured != "")
		if p.Path != "" {
			r.f.OCIRuntimeRefused[name] = p.Problem
		}
		return c
	}
	r.found(p)
	if reason := r.runtimeRefusal(name); reason != "" {
		c.Status = Warn
		c.Detail = p.Path + ": " + reason
		r.f.OCIRuntimeRefused[name] = reason
		return c
	}
	r.f.OCIRuntimes[name] = p.Path
	c.Detail = p.Path
	if version != "" {
		c.Detail += " (" + version + ")"
		if r.f.OCIRuntimeVersions == nil {
			r.f.OCIRuntimeVersions = map[string]string{}
		}
		r.f.OCIRuntimeVersions[name] = version
	}
	if note := r.runtimeNote(name); note != "" {
		c.Detail += ": " + note
	}
	return c
}

// The crun probe. crun 1.x reads the cgroup layout from /sys/fs/cgroup
// and refuses a hybrid host, one with cgroup2 at /sys/fs/cgroup/unified
// holding a controller ("cgroups in hybrid mode not supported"), even with
// its cgroup manager disabled. crib's rootless daemon hides that mount in
// its own mount namespace (server/cgroupview.go), where crun then sees a
// v1-only host and runs; rootful crib lives in the host's mount namespace
// and cannot. A pure v2 or pure v1 host is crun's own ground.

// runtimeRefusal says why a runtime that runs still cannot run containers
// for crib on this host, or "".
func (r *run) runtimeRefusal(name string) string {
	l := r.layout
	if name == IDCrun && l.hybrid && len(l.unifiedControllers) > 0 && r.h.rootful() {
		return fmt.Sprintf("crun refuses this hybrid cgroup host (v1 controllers mounted and cgroup2 at %s with controllers %s): it fails every container with \"cgroups in hybrid mode not supported\", and rootful crib runs in the host's mount namespace, where that mount stays visible; runc is used",
			l.unified.point, strings.Join(l.unifiedControllers, " "))
	}
	return ""
}

// runtimeNote says how a usable runtime works here when that needs crib's
// help, or "".
func (r *run) runtimeNote(name string) string {
	l := r.layout
	if name == IDCrun && l.hybrid && len(l.unifiedControllers) > 0 {
		return fmt.Sprintf("hybrid cgroup host: crib hides cgroup2 at %s (controllers %s) in its own mount namespace, where crun sees the v1 hierarchies crib uses",
			l.unified.point, strings.Join(l.unifiedControllers, " "))
	}
	return ""
}

func (r *run) checkDefaultRuntime() Check {
	c := Check{ID: IDOCIRuntime, Title: "OCI runtime", Hard: true}
	want := r.cfg.Runtime.DefaultHandler
	var usable []string
	for _, name := range runtimeNames() {
		if _, ok := r.f.OCIRuntimes[name]; ok {
			usable = append(usable, name)
		}
	}
	switch {
	case len(usable) == 0:
		c.Status = Fail
		c.Detail = "neither runc nor crun can run containers here"
		c.Fix = r.fix.install(IDRunc)
	case want == "" || want == "auto":
		r.f.DefaultRuntime = usable[0]
		r.f.DefaultRuntimeReason = r.autoReason(usable[0])
		c.Detail = fmt.Sprintf("usable: %s; default: %s (%s)", strings.Join(usable, ", "), usable[0], r.f.DefaultRuntimeReason)
	case r.f.OCIRuntimes[want] != "":
		r.f.DefaultRuntime = want
		r.f.DefaultRuntimeReason = "configured (runtime.default_handler)"
		c.Detail = fmt.Sprintf("usable: %s; default: %s (configured)", strings.Join(usable, ", "), want)
	default:
		c.Status = Fail
		why := r.f.OCIRuntimeRefused[want]
		if why == "" {
			why = "not a usable handler here"
		}
		c.Detail = fmt.Sprintf("the configured default runtime %q cannot be used (%s); usable: %s", want, why, strings.Join(usable, ", "))
		c.Fix = "crib serve --default-runtime=" + usable[0] + " (or set runtime.default_handler = \"" + usable[0] + "\" in crib.toml)"
	}
	return c
}

// autoReason says why "auto" picked the runtime it did.
func (r *run) autoReason(picked string) string {
	if picked == IDCrun {
		if note := r.runtimeNote(IDCrun); note != "" {
			return "auto: crun, the faster runtime, works here: " + note
		}
		return "auto: crun, the faster runtime, works here"
	}
	if why := r.f.OCIRuntimeRefused[IDCrun]; why != "" {
		return "auto: crun cannot be used: " + why
	}
	return "auto: crun is not installed"
}

// conmonDirs are where distributions put conmon off PATH.
func conmonDirs() []string {
	return []string{"/usr/libexec/podman", "/usr/local/libexec/podman", "/usr/libexec/crio", "/usr/lib/podman"}
}

func (r *run) checkConmon() Check {
	c := Check{ID: IDConmon, Title: "conmon (container monitor)", Hard: true}
	p := r.h.findProgram("conmon", r.cfg.Runtime.ConmonPath, conmonDirs()...)
	exeProblem := p.Problem
	version := r.h.version(&p)
	if p.Path == "" || p.Problem != "" {
		c.Status = Fail
		c.Detail = p.Problem + ": crib cannot start containers without it"
		c.Fix = r.programFix(p, exeProblem, "conmon", "--conmon-path", r.cfg.Runtime.ConmonPath != "", conmonDirs()...)
		return c
	}
	r.found(p)
	r.f.Conmon = p.Path
	c.Detail = p.Path
	if version != "" {
		c.Detail += " (" + version + ")"
	}
	return c
}

// programFix is the fix for a program that is missing or does not run:
// point the configuration at a working copy, make it executable, or
// install it.
func (r *run) programFix(p program, exeProblem, pkg, flag string, configured bool, extraDirs ...string) string {
	if configured {
		if alt := r.h.findProgram(pkg, "", extraDirs...); alt.usable() && alt.Path != p.Path {
			return "crib serve " + flag + "=" + alt.Path
		}
	}
	if p.Path != "" && exeProblem != "" && !strings.HasSuffix(exeProblem, "does not exist") {
		return r.fix.sudo("chmod 0755 " + p.Path)
	}
	return r.fix.install(pkg)
}
