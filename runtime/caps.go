package runtime

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// defaultCapabilities is the set containerd and CRI-O give a container that
// asks for nothing else.
var defaultCapabilities = []string{
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE",
	"CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYS_CHROOT",
}

// allCapabilities is the CRI keyword for every capability.
const allCapabilities = "ALL"

func (b *specBuilder) setCapabilities() error {
	caps, err := containerCapabilities(b.sc.GetCapabilities(), b.privileged(), b.in.Host.BoundingCaps)
	if err != nil {
		return err
	}
	b.spec.Process.Capabilities = caps
	return nil
}

// containerCapabilities computes the capability sets. A privileged container
// gets the host's bounding set. Otherwise the defaults (those the host has)
// are the base; a drop of ALL empties it, an add of ALL (without a drop of
// ALL) fills it with the bounding set; named adds, then named drops apply.
// Ambient capabilities go into every set, as the CRI describes, and into
// the inheritable set because the kernel requires it for ambient ones.
// Other capabilities stay out of the inheritable set (CVE-2022-24769).
func containerCapabilities(req *runtimeapi.Capability, privileged bool, bounding []string) (*specs.LinuxCapabilities, error) {
	if privileged {
		all := slices.Clone(bounding)
		slices.Sort(all)
		return &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}, nil
	}
	add, addAll, err := parseCapabilities(req.GetAddCapabilities(), bounding, true)
	if err != nil {
		return nil, err
	}
	drop, dropAll, err := parseCapabilities(req.GetDropCapabilities(), bounding, false)
	if err != nil {
		return nil, err
	}
	ambient, ambientAll, err := parseCapabilities(req.GetAddAmbientCapabilities(), bounding, true)
	if err != nil {
		return nil, err
	}
	if ambientAll {
		ambient = bounding
	}
	set := intersect(defaultCapabilities, bounding)
	if dropAll {
		set = nil
	} else if addAll {
		set = bounding
	}
	set = union(set, add, ambient)
	set = without(set, drop)
	ambient = without(union(ambient), drop)
	return &specs.LinuxCapabilities{
		Bounding: set, Effective: set, Permitted: set,
		Inheritable: ambient, Ambient: ambient,
	}, nil
}

// parseCapabilities normalises CRI names ("NET_ADMIN", "cap_net_admin") to
// "CAP_NET_ADMIN", reports ALL separately, and refuses unknown names and,
// for additions, capabilities outside the bounding set: no process started
// by crib could hold them.
func parseCapabilities(names, bounding []string, adding bool) (caps []string, all bool, err error) {
	for _, n := range names {
		if strings.EqualFold(n, allCapabilities) {
			all = true
			continue
		}
		c := normalizeCapability(n)
		if !knownCapability(c) {
			return nil, false, fmt.Errorf("%w: unknown capability %q", errdefs.ErrInvalidArgument, n)
		}
		if adding && !slices.Contains(bounding, c) {
			return nil, false, fmt.Errorf("%w: capability %s is outside crib's bounding set, so no container can hold it", errdefs.ErrInvalidArgument, c)
		}
		caps = append(caps, c)
	}
	return caps, all, nil
}

func normalizeCapability(name string) string {
	c := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

func knownCapability(name string) bool {
	for _, c := range capability.ListKnown() {
		if "CAP_"+strings.ToUpper(c.String()) == name {
			return true
		}
	}
	return false
}

// intersect keeps the items of a that are also in b.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// union merges lists into a sorted list without duplicates.
func union(lists ...[]string) []string {
	out := []string{}
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// without removes the items of drop from set.
func without(set, drop []string) []string {
	out := []string{}
	for _, x := range set {
		if !slices.Contains(drop, x) {
			out = append(out, x)
		}
	}
	return out
}
