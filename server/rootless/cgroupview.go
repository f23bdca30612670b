package rootless

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/mountinfo"
)

// The cgroup view. On a cgroup v1 host crib's rootless daemon shows crun
// (and runc, the kubelet, anything run in crib's namespaces) a
// /sys/fs/cgroup of its own, in its own mount namespace: a new tmpfs that
// holds the v1 hierarchies and nothing else.
//
//   - A hybrid host mounts cgroup2 at /sys/fs/cgroup/unified. crib uses
//     the v1 hierarchies there (runtime/cgroups counts a hybrid host as
//     v1), but crun refuses a host where it finds cgroup2 there with a
//     controller ("cgroups in hybrid mode not supported"), and in v1 mode
//     it still joins any /sys/fs/cgroup/unified it finds. The mount cannot
//     simply go: one crib's user namespace inherited from the host is
//     locked to the ones around it (no unmount), and a tmpfs over it still
//     leaves the directory. So the view is a new /sys/fs/cgroup without it.
//   - A v1 hierarchy in which crib does not sit at the root (the memory
//     one here: the machine's processes live in a memory cgroup, and the
//     delegated subtree is below it) is mounted from crib's own cgroup. A
//     container's cgroupsPath is relative to the runtime's own cgroup, and
//     one path serves every hierarchy; runc resolves it so, but crun takes
//     it from each hierarchy's mount. Rooted at crib's cgroup, the
//     hierarchy shows the same directory to both (runc reads a mount's
//     root from mountinfo, and runtime/cgroups does the same), and nothing
//     above crib's cgroup is in sight.
//
// The hierarchies are bound to a staging directory under the runroot
// first, then moved under the new tmpfs, which ends read-only. A pure v2
// host (cgroup2 at /sys/fs/cgroup) is left alone: crun runs there as it
// is; so is a v1 host where crib sits at every hierarchy's root and no
// cgroup2 is mounted below /sys/fs/cgroup.

// cgroupfsRoot is where cgroup file systems are mounted.
const cgroupfsRoot = "/sys/fs/cgroup"

// cgroupViewSource names the view's tmpfs, so that a restarted daemon,
// rejoining the same mount namespace, finds the view already made.
const cgroupViewSource = "crib-cgroup-view"

// cgroupViewPlan is what the view holds: each v1 hierarchy's directory
// name under /sys/fs/cgroup with the directory to mount there, and the
// symbolic links beside them (cpu → cpu,cpuacct).
type cgroupViewPlan struct {
	hierarchies []cgroupViewMount
	links       map[string]string
	hidden      []string // what the view leaves out, for the log
}

type cgroupViewMount struct{ name, source string }

// topMounts maps each mount point to the mount on top there (mountinfo
// lists a mount after the one it covers) and keeps the points in order.
func topMounts(mounts []mountinfo.Entry) (map[string]mountinfo.Entry, []string) {
	top := map[string]mountinfo.Entry{}
	var order []string
	for _, m := range mounts {
		if _, seen := top[m.Point]; !seen {
			order = append(order, m.Point)
		}
		top[m.Point] = m
	}
	return top, order
}

// planCgroupView decides the view from the mount table, crib's
// /proc/self/cgroup and the links found in /sys/fs/cgroup; ok is false
// when the host needs none or the view is there already.
func planCgroupView(mounts []mountinfo.Entry, procCgroup string, links map[string]string) (cgroupViewPlan, bool) {
	top, order := topMounts(mounts)
	base, ok := top[cgroupfsRoot]
	if !ok || base.FSType == "cgroup2" || base.Source == cgroupViewSource {
		return cgroupViewPlan{}, false
	}
	p := cgroupViewPlan{links: map[string]string{}}
	rooted := false
	for _, point := range order {
		m := top[point]
		if filepath.Dir(point) != cgroupfsRoot {
			continue
		}
		name := filepath.Base(point)
		switch m.FSType {
		case "cgroup":
			source := point
			if own := ownCgroupOf(m.SuperOptions, procCgroup); own != "" && own != "/" && m.Root == "/" {
				source, rooted = filepath.Join(point, own), true
			}
			p.hierarchies = append(p.hierarchies, cgroupViewMount{name: name, source: source})
		case "cgroup2":
			p.hidden = append(p.hidden, point)
		}
	}
	for name, target := range links {
		if slices.ContainsFunc(p.hierarchies, func(h cgroupViewMount) bool { return h.name == target }) {
			p.links[name] = target
		}
	}
	return p, len(p.hierarchies) > 0 && (rooted || len(p.hidden) > 0)
}

// ownCgroupOf finds, in /proc/self/cgroup's "ID:CONTROLLERS:PATH" lines,
// the path in the v1 hierarchy whose mount options name one of its
// controllers (or its name=NAME).
func ownCgroupOf(superOptions []string, procCgroup string) string {
	for line := range strings.Lines(procCgroup) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if slices.Contains(superOptions, c) {
				return parts[2]
			}
		}
	}
	return ""
}

// cgroupLinks reads the symbolic links directly in /sys/fs/cgroup.
func cgroupLinks() map[string]string {
	out := map[string]string{}
	entries, _ := os.ReadDir(cgroupfsRoot)
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 {
			if target, err := os.Readlink(filepath.Join(cgroupfsRoot, e.Name())); err == nil {
				out[e.Name()] = target
			}
		}
	}
	return out
}

// prepareCgroupView makes the view in crib's mount namespace (never the
// host's) and says what it did ("" when nothing was needed).
func prepareCgroupView(runRoot string) (string, error) {
	mounts, err := mountinfo.Entries()
	if err != nil {
		return "", fmt.Errorf("reading the mount table: %w", err)
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	plan, ok := planCgroupView(mounts, string(own), cgroupLinks())
	if !ok {
		return "", nil
	}
	if err := mountCgroupView(plan, filepath.Join(runRoot, "cgroup-view")); err != nil {
		return "", err
	}
	var did []string
	for _, h := range plan.hierarchies {
		if h.source != filepath.Join(cgroupfsRoot, h.name) {
			did = append(did, h.name+" rooted at "+strings.TrimPrefix(h.source, filepath.Join(cgroupfsRoot, h.name)))
		}
	}
	for _, h := range plan.hidden {
		did = append(did, "hid "+h)
	}
	return strings.Join(did, "; "), nil
}

// mountCgroupView carries the plan out; on failure it takes down what it
// mounted, leaving the host's /sys/fs/cgroup in sight.
func mountCgroupView(plan cgroupViewPlan, staging string) (retErr error) {
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return err
	}
	var made, staged []string
	// Only rmdir: never a recursive removal where a cgroup hierarchy may
	// still be mounted (it would remove cgroups).
	defer func() {
		for _, d := range made {
			os.Remove(d)
		}
		os.Remove(staging)
	}()
	viewMounted := false
	defer func() {
		if retErr == nil {
			return
		}
		if viewMounted {
			unix.Unmount(cgroupfsRoot, unix.MNT_DETACH)
		}
		for _, s := range staged {
			unix.Unmount(s, unix.MNT_DETACH)
		}
	}()
	for _, h := range plan.hierarchies {
		dir := filepath.Join(staging, h.name)
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		made = append(made, dir)
		if err := unix.Mount(h.source, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s: %w", h.source, err)
		}
		staged = append(staged, dir)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount(cgroupViewSource, cgroupfsRoot, "tmpfs", flags, "mode=0755"); err != nil {
		return fmt.Errorf("mounting a tmpfs on %s: %w", cgroupfsRoot, err)
	}
	viewMounted = true
	for i, h := range plan.hierarchies {
		point := filepath.Join(cgroupfsRoot, h.name)
		if err := os.Mkdir(point, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(staged[i], point, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s to %s: %w", h.source, point, err)
		}
	}
	for name, target := range plan.links {
		if err := os.Symlink(target, filepath.Join(cgroupfsRoot, name)); err != nil {
			return err
		}
	}
	return unix.Mount("", cgroupfsRoot, "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, "mode=0755")
}
