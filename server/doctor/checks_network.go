package doctor

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// outboundHelpers are the programs that connect crib's network namespace
// to the outside, in the order "auto" prefers them, with their packages.
func outboundHelpers() []string { return []string{"slirp4netns", "pasta"} }

func (r *run) checkOutbound() Check {
	c := Check{ID: IDOutbound, Title: "outbound network (slirp4netns/pasta)"}
	if r.h.rootful() {
		c.Detail = notNeeded
		return c
	}
	want := r.cfg.Network.Outbound
	if want == "none" {
		c.Detail = "disabled by configuration (network outbound none): crib's namespace has no outside network"
		return c
	}
	tunProblem := r.h.deviceProblem("/dev/net/tun")
	var found, problems []string
	for _, name := range outboundHelpers() {
		p := r.h.findProgram(name, "")
		if p.Problem != "" {
			problems = append(problems, p.Problem)
			continue
		}
		r.found(p)
		found = append(found, name)
		if tunProblem == "" {
			r.f.Outbound = append(r.f.Outbound, name)
		}
	}
	if tunProblem != "" {
		problems = append(problems, tunProblem)
	}
	specific := want != "" && want != "auto"
	switch {
	case specific && slices.Contains(r.f.Outbound, want):
		c.Detail = want + " (configured); usable: " + strings.Join(r.f.Outbound, ", ")
		return c
	case !specific && len(r.f.Outbound) > 0:
		c.Detail = "usable: " + strings.Join(r.f.Outbound, ", ")
		return c
	}
	c.Status = Warn
	c.Detail = strings.Join(problems, "; ")
	if specific {
		c.Detail = fmt.Sprintf("the configured outbound helper %s is not usable: %s", want, c.Detail)
	}
	c.Detail += ": crib runs without outside network (pulls from remote registries and pod egress fail)"
	var fixes []string
	switch {
	case specific && !slices.Contains(found, want):
		fixes = append(fixes, r.fix.install(want))
	case len(found) == 0:
		fixes = append(fixes, r.fix.install("slirp4netns"))
	}
	if tunProblem != "" {
		fixes = append(fixes, r.deviceFix("/dev/net/tun", "tun", tunProblem))
	}
	c.Fix = and(fixes...)
	return c
}

// cniPlugins are the plugins of the network configuration crib writes.
func cniPlugins() []string { return []string{"bridge", "host-local", "portmap", "loopback"} }

// otherCNIDirs are where distributions install CNI plugins, to point the
// configuration at when the configured directories lack them.
func otherCNIDirs() []string {
	return []string{"/usr/lib/cni", "/usr/libexec/cni", "/opt/cni/bin", "/usr/local/lib/cni"}
}

func (r *run) checkCNIPlugins() Check {
	c := Check{ID: IDCNIPlugins, Title: "CNI plugins"}
	dirs := r.cfg.Network.CNIPluginDirs
	var missing []string
	for _, name := range cniPlugins() {
		if r.cniPluginIn(dirs, name) == "" {
			missing = append(missing, name)
		}
	}
	for _, dir := range dirs {
		if len(r.missingCNIPlugins(dir)) == 0 {
			r.f.CNIPluginDir = dir
			break
		}
	}
	if len(missing) == 0 {
		c.Detail = strings.Join(cniPlugins(), ", ") + " in " + strings.Join(dirs, ":")
		return c
	}
	c.Status = Warn
	c.Detail = fmt.Sprintf("%s not found in %s: NetworkReady stays false, so the kubelet starts only host-network pods",
		strings.Join(missing, ", "), orNone(strings.Join(dirs, ":")))
	c.Fix = r.fix.install("cni-plugins")
	for _, dir := range otherCNIDirs() {
		if !slices.Contains(dirs, dir) && len(r.missingCNIPlugins(dir)) == 0 {
			c.Fix = "crib serve --cni-plugin-dir=" + dir
			break
		}
	}
	return c
}

// cniPluginIn is the first dir of dirs holding an executable plugin name.
func (r *run) cniPluginIn(dirs []string, name string) string {
	for _, dir := range dirs {
		if r.h.executableProblem(path.Join(dir, name)) == "" {
			return dir
		}
	}
	return ""
}

func (r *run) missingCNIPlugins(dir string) []string {
	var missing []string
	for _, name := range cniPlugins() {
		if r.h.executableProblem(path.Join(dir, name)) != "" {
			missing = append(missing, name)
		}
	}
	return missing
}
