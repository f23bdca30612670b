package doctor

import (
	"fmt"
	"strings"
)

// runtimeNames are the OCI runtimes crib offers as handlers, in the order
// "auto" prefers them.
func runtimeNames() []string { return []string{IDRunc, IDCrun} }

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
	}
	return c
}

// runtimeRefusal says why a runtime that runs still cannot run containers
// on this host, or "".
func (r *run) runtimeRefusal(name string) string {
	l := r.layout
	// crun treats a hybrid host as supported only while the cgroup2
	// hierarchy has no controllers; otherwise it fails every container.
	if name == IDCrun && l.hybrid && len(l.unifiedControllers) > 0 {
		return fmt.Sprintf("crun refuses this hybrid cgroup host (v1 controllers mounted and cgroup2 at %s with controllers %s): it fails every container with \"cgroups in hybrid mode not supported\"; use runc",
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
		c.Detail = fmt.Sprintf("usable: %s; default: %s", strings.Join(usable, ", "), usable[0])
	case r.f.OCIRuntimes[want] != "":
		r.f.DefaultRuntime = want
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
