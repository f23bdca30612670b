package cgroups

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/mountinfo"
)

// DetectOptions says where to look; the zero value looks at this host.
type DetectOptions struct {
	// Manager is auto, cgroupfs or none (config.Cgroup.Manager).
	Manager string
	// Parent is the delegated base (config.Cgroup.Parent). An absolute
	// path is looked for from each hierarchy's root, then below crib's own
	// cgroup in that hierarchy (where an admin delegates memory on v1); a
	// relative one, or "", is taken below crib's own cgroup.
	Parent string
	// Root is the cgroup mount root; "" means /sys/fs/cgroup.
	Root string
	// ProcSelfCgroup is crib's cgroup membership; "" means /proc/self/cgroup.
	ProcSelfCgroup string
	// Mounts lists the mounts, to find v1 hierarchies mounted from below
	// their root; nil means this process's (mountinfo.Entries).
	Mounts func() ([]mountinfo.Entry, error)
	// Writable reports whether crib may create cgroups in dir; nil means
	// access(2) with W_OK, which honours the user namespace's id mapping.
	Writable func(dir string) bool
}

// Detect picks the manager for this host. The reason says, for an
// operator, why that manager and not a better one; an error means a forced
// choice cannot be honoured.
func Detect(o DetectOptions) (Manager, string, error) {
	o = o.withDefaults()
	switch o.Manager {
	case "none":
		return None(), "cgroup manager \"none\" configured: pods run unconfined", nil
	case "auto", "", "cgroupfs":
	default:
		return nil, "", fmt.Errorf("%w: unknown cgroup manager %q (auto, cgroupfs or none)", errdefs.ErrInvalidArgument, o.Manager)
	}
	own, err := parseProcCgroup(o.ProcSelfCgroup)
	if err != nil {
		return nil, "", err
	}
	var m Manager
	var reason string
	if isUnified(o.Root) {
		m, reason = detectV2(o, own)
	} else {
		m, reason = detectV1(o, ownInView(own, o))
	}
	if m == nil {
		if o.Manager == "cgroupfs" {
			return nil, "", fmt.Errorf("%w: cgroup manager cgroupfs configured, but %s", errdefs.ErrUnavailable, reason)
		}
		return None(), reason + ": pods run unconfined", nil
	}
	return m, reason, nil
}

func (o DetectOptions) withDefaults() DetectOptions {
	if o.Root == "" {
		o.Root = "/sys/fs/cgroup"
	}
	if o.ProcSelfCgroup == "" {
		o.ProcSelfCgroup = "/proc/self/cgroup"
	}
	if o.Mounts == nil {
		o.Mounts = mountinfo.Entries
	}
	if o.Writable == nil {
		o.Writable = func(dir string) bool { return unix.Access(dir, unix.W_OK) == nil }
	}
	return o
}

// isUnified reports a pure cgroup v2 host; a hybrid host (v2 mounted at
// /sys/fs/cgroup/unified) counts as v1, where its controllers are.
func isUnified(root string) bool {
	_, err := os.Stat(filepath.Join(root, "cgroup.controllers"))
	return err == nil
}

func detectV2(o DetectOptions, own map[string]string) (Manager, string) {
	base := filepath.Join(o.Root, own[""], o.Parent)
	if filepath.IsAbs(o.Parent) {
		base = filepath.Join(o.Root, o.Parent)
	}
	if !o.Writable(base) || !o.Writable(filepath.Join(base, "cgroup.subtree_control")) {
		return nil, fmt.Sprintf("cgroup v2: %s is not delegated to crib (not writable)", base)
	}
	if hasProcesses(base) {
		return nil, fmt.Sprintf("cgroup v2: %s holds processes, so no controller can be enabled below it; set cgroup.parent to an empty delegated cgroup", base)
	}
	avail, _ := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	var ctrls []string
	for _, c := range strings.Fields(string(avail)) {
		if slices.Contains(v2Wanted, c) {
			ctrls = append(ctrls, c)
		}
	}
	slices.Sort(ctrls)
	return &v2{root: o.Root, base: base, controllers: ctrls},
		fmt.Sprintf("cgroup v2 delegated at %s (controllers: %s)", base, strings.Join(ctrls, " "))
}

func detectV1(o DetectOptions, own map[string]string) (Manager, string) {
	m := &v1{root: o.Root, own: map[string]string{}, bases: map[string]string{}}
	var missing []string
	for _, c := range v1Controllers {
		ownPath, ok := own[c]
		if !ok {
			continue // not mounted as v1 here
		}
		base := v1Base(o, c, ownPath)
		if base == "" {
			missing = append(missing, c)
			continue
		}
		m.own[c], m.bases[c] = ownPath, base
	}
	if len(m.bases) == 0 {
		return nil, "cgroup v1: no controller has a subtree writable by crib (an admin can delegate one: scripts/cgroup-delegate.sh)"
	}
	if err := m.choosePathForm(); err != nil {
		return nil, err.Error()
	}
	reason := "cgroup v1 delegated (controllers: " + strings.Join(m.Controllers(), " ") + ")"
	if len(missing) > 0 {
		reason += "; not delegated: " + strings.Join(missing, " ")
	}
	return m, reason
}

// v1Base finds controller c's delegated base, "" when none is writable.
func v1Base(o DetectOptions, c, ownPath string) string {
	var candidates []string
	if filepath.IsAbs(o.Parent) {
		candidates = append(candidates, filepath.Join(o.Root, hierarchyDir(c), o.Parent))
	}
	candidates = append(candidates, filepath.Join(o.Root, hierarchyDir(c), ownPath, o.Parent))
	for _, dir := range candidates {
		if st, err := os.Stat(dir); err == nil && st.IsDir() && o.Writable(dir) {
			return dir
		}
	}
	return ""
}

// choosePathForm picks a pod path form valid in every hierarchy: relative
// to crib's own cgroups when every base is the same way below them, else
// absolute when every base is at the same place from the roots.
func (m *v1) choosePathForm() error {
	rels, abss := map[string]bool{}, map[string]bool{}
	for c, base := range m.bases {
		rel, _ := filepath.Rel(filepath.Join(m.root, hierarchyDir(c), m.own[c]), base)
		rels[rel] = true
		abs, _ := filepath.Rel(filepath.Join(m.root, hierarchyDir(c)), base)
		abss[abs] = true
	}
	// Where crib sits at the root of every hierarchy (as it is made to in
	// its cgroup view), the two forms name the same cgroups, and the
	// absolute one needs no lookup of the runtime's own cgroup: runc 1.1
	// resolves that from the first mount of the hierarchy it finds in
	// mountinfo, the host's even where crib's view has mounted another
	// over it.
	allRoot := true
	for _, own := range m.own {
		allRoot = allRoot && own == "/"
	}
	if len(rels) == 1 && !allRoot {
		for r := range rels {
			if !strings.HasPrefix(r, "..") {
				m.prefix, m.relative = r, true
				return nil
			}
		}
	}
	if len(abss) == 1 {
		for a := range abss {
			m.prefix = "/" + a
			return nil
		}
	}
	return fmt.Errorf("cgroup v1: the delegated subtrees are at different places in each hierarchy (%v) and not the same way below crib's own cgroups; delegate them alike", m.bases)
}

// parseProcCgroup reads /proc/self/cgroup into controller → path; the
// unified hierarchy's entry has the key "".
func parseProcCgroup(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading crib's cgroups: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, sc.Err()
}

// ownInView maps crib's v1 cgroups onto the hierarchies as they are
// mounted. A hierarchy mounted from one of its cgroups rather than its
// root (crib's own view of /sys/fs/cgroup, server/cgroupview.go, or a
// cgroup namespace's mount) shows crib's cgroup relative to that one.
func ownInView(own map[string]string, o DetectOptions) map[string]string {
	mounts, err := o.Mounts()
	if err != nil {
		return own
	}
	roots := map[string]string{} // mount point → the cgroup mounted there
	for _, m := range mounts {
		if m.FSType == "cgroup" {
			roots[m.Point] = m.Root // the last listed is on top
		}
	}
	out := make(map[string]string, len(own))
	for c, p := range own {
		out[c] = p
		dir := filepath.Join(o.Root, hierarchyDir(c))
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real // cpu → cpu,cpuacct
		}
		root, ok := roots[dir]
		switch {
		case !ok || root == "/" || root == "":
		case p == root:
			out[c] = "/"
		case strings.HasPrefix(p, root+"/"):
			out[c] = strings.TrimPrefix(p, root)
		}
	}
	return out
}
