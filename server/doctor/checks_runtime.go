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

// The crun probe. crun 1.x refuses a hybrid host, one with cgroup2 at
// /sys/fs/cgroup/unified holding a controller ("cgroups in hybrid mode not
// supported"), even with its cgroup manager disabled, and on cgroup v1 it
// reads a container's cgroup path from each hierarchy's root where runc
// reads it from the runtime's own cgroup. crib's rootless daemon shows its
// namespaces a v1-only /sys/fs/cgroup with each hierarchy mounted from
// crib's own cgroup (server/cgroupview.go), where crun runs. Rootful crib
// lives in the host's mount namespace: there crun works on a pure v2
// host, or a pure v1 one where crib sits at every hierarchy's root.

// runtimeRefusal says why a runtime that runs still cannot run containers
// for crib on this host, or "".
func (r *run) runtimeRefusal(name string) string {
	l := r.layout
	if name != IDCrun || !r.h.rootful() || l.version != 1 {
		return ""
	}
	const noView = "rootful crib runs in the host's mount namespace, where it does not make its cgroup view; runc is used"
	if l.hybrid {
		return fmt.Sprintf("crun refuses a hybrid cgroup host (cgroup2 at %s besides the v1 controllers): it fails containers with \"cgroups in hybrid mode not supported\" or joins that hierarchy; %s",
			l.unified.point, noView)
	}
	if r.cfg.Cgroup.Manager == "none" {
		return "" // no pod cgroups, no paths to resolve
	}
	for _, c := range v1Controllers() {
		if own, ok := l.own[c]; ok && own != "/" {
			return fmt.Sprintf("crun resolves a container's cgroup path from each v1 hierarchy's root, and crib's %s cgroup (%s) is not at its root; %s", c, own, noView)
		}
	}
	return ""
}

// runtimeNote says how a usable runtime works here when that needs crib's
// help, or "".
func (r *run) runtimeNote(name string) string {
	l := r.layout
	if name != IDCrun || r.h.rootful() || l.version != 1 {
		return ""
	}
	if l.hybrid {
		return fmt.Sprintf("hybrid cgroup host: crib hides cgroup2 at %s in its own mount namespace, where crun sees the v1 hierarchies crib uses", l.unified.point)
	}
	for _, c := range v1Controllers() {
		if own, ok := l.own[c]; ok && own != "/" {
			return "crib's mount namespace shows each v1 hierarchy from crib's own cgroup, where crun finds the pods' cgroups"
		}
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
