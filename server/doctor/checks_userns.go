package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idmap"
)

// minSubids is the size of the id range a pod may use: Kubernetes images
// run as ids up to 65534 (nobody) and 65535.
const minSubids = 65536

// subidBase is where useradd starts handing out subordinate ids.
const subidBase = 100000

func (r *run) checkSubids(id, file string) Check {
	kind := strings.TrimPrefix(id, "sub") // "uid" or "gid"
	c := Check{ID: id, Title: "subordinate " + kind + "s (" + file + ")", Hard: !r.h.rootful()}
	if r.h.rootful() {
		c.Detail = notNeeded
		return c
	}
	ranges, err := r.lookupSubids(file)
	if id == IDSubuid {
		r.f.Subuid = ranges
	} else {
		r.f.Subgid = ranges
	}
	total := idmap.Total(ranges)
	switch {
	case errors.Is(err, errdefs.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s has no subordinate %ss in %s: crib cannot map the ids containers run as", r.h.User, kind, file)
	case err != nil:
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s: %v", file, err)
		c.Fix = "sudoedit " + file
		return c
	case total < minSubids:
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s has %d subordinate %ss in %s, need at least %d (pods use ids up to 65535)", r.h.User, total, kind, file, minSubids)
	default:
		c.Detail = fmt.Sprintf("%s: %s (%d ids); %s", r.h.User, rangesText(ranges), total, podRoom(total))
		return c
	}
	c.Fix = r.fix.sudo(fmt.Sprintf("usermod --add-sub%ss %s %s", kind, r.freeRange(file), r.h.User))
	return c
}

// podRoom says how many user-namespaced pods (hostUsers: false) crib's
// namespace holds: the user's own id plus total subordinate ids.
func podRoom(total int) string {
	n := idmap.PodCapacity(1 + total)
	if n == 0 {
		return fmt.Sprintf("no room for user-namespaced pods (hostUsers: false needs at least %d ids; scripts/host-setup.sh gives %d)", 2*idmap.PodIDs-1, hostSetupSubids)
	}
	return fmt.Sprintf("room for %d user-namespaced pods of %d ids", n, idmap.PodIDs)
}

// hostSetupSubids is what scripts/host-setup.sh gives crib's user: room
// for the kubelet's default 110 pods, each in its own user namespace.
const hostSetupSubids = 111 * idmap.PodIDs

func (r *run) lookupSubids(file string) ([]idmap.Range, error) {
	f, err := os.Open(r.h.path(file))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return idmap.Lookup(f, r.h.User, r.h.UID)
}

// freeRange is a range of minSubids ids that no entry of file uses yet, so
// the printed usermod command never makes two users share ids.
func (r *run) freeRange(file string) idmap.Range {
	var entries []idmap.Entry
	if f, err := os.Open(r.h.path(file)); err == nil {
		entries, _ = idmap.Parse(f) // malformed lines are reported by the check itself
		f.Close()
	}
	return idmap.Range{Start: idmap.FirstFree(entries, subidBase, minSubids), Count: minSubids}
}

func rangesText(ranges []idmap.Range) string {
	parts := make([]string, len(ranges))
	for i, rg := range ranges {
		parts[i] = rg.String()
	}
	return strings.Join(parts, ", ")
}

// Capability numbers from linux/capability.h.
const (
	capSetgid = 6
	capSetuid = 7
)

func (r *run) checkIDMapper(id string) Check {
	c := Check{ID: id, Title: id, Hard: !r.h.rootful()}
	if r.h.rootful() {
		c.Detail = notNeeded
		return c
	}
	capName, capBit := "cap_setuid", capSetuid
	if id == IDNewgidmap {
		capName, capBit = "cap_setgid", capSetgid
	}
	p := r.h.findProgram(id, "")
	if p.Path == "" {
		c.Status, c.Detail, c.Fix = Fail, p.Problem, r.fix.install("newuidmap")
		return c
	}
	if p.Problem != "" {
		c.Status, c.Detail, c.Fix = Fail, p.Problem, r.fix.sudo("chmod 4755 "+p.Path)
		return c
	}
	how, err := r.privilege(p.Path, capBit)
	if err != nil {
		c.Status = Fail
		c.Detail = fmt.Sprintf("%s is neither setuid root nor has the %s file capability (%v): it cannot write another process's id map", p.Path, capName, err)
		c.Fix = r.fix.sudo("chown root:root "+p.Path) + " && " + r.fix.sudo("chmod 4755 "+p.Path)
		return c
	}
	r.found(p)
	c.Detail = p.Path + ": " + how
	return c
}

// privilege says how path gets the right to write id maps: setuid root, or
// a file capability holding capBit.
func (r *run) privilege(path string, capBit int) (string, error) {
	full := r.h.path(path)
	info, err := os.Stat(full)
	if err != nil {
		return "", err
	}
	if info.Mode()&fs.ModeSetuid != 0 && ownerOf(info) == 0 {
		return "setuid root", nil
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(full, "security.capability", buf)
	if err != nil {
		if errors.Is(err, unix.ENODATA) {
			return "", errors.New("no security.capability attribute")
		}
		return "", fmt.Errorf("reading security.capability: %w", err)
	}
	permitted, err := parseFileCaps(buf[:n])
	if err != nil {
		return "", err
	}
	if permitted&(1<<capBit) == 0 {
		return "", fmt.Errorf("file capabilities lack capability %d", capBit)
	}
	return "file capability " + capabilityName(capBit), nil
}

func capabilityName(bit int) string {
	if bit == capSetuid {
		return "cap_setuid"
	}
	return "cap_setgid"
}

// Layout of struct vfs_cap_data (linux/capability.h): a little-endian
// magic word whose top byte is the revision, then permitted/inheritable
// pairs (one pair in revision 1, two 32-bit halves from revision 2), then
// in revision 3 the root uid of the namespace the caps apply in.
const (
	vfsCapRevisionMask = 0xFF000000
	vfsCapRevision1    = 0x01000000
	vfsCapRevision2    = 0x02000000
	vfsCapRevision3    = 0x03000000
)

// parseFileCaps returns the permitted set of a security.capability value.
func parseFileCaps(b []byte) (uint64, error) {
	if len(b) < 4 {
		return 0, fmt.Errorf("security.capability is %d bytes, too short", len(b))
	}
	magic := binary.LittleEndian.Uint32(b)
	want := 0
	switch magic & vfsCapRevisionMask {
	case vfsCapRevision1:
		want = 12
	case vfsCapRevision2:
		want = 20
	case vfsCapRevision3:
		want = 24
	default:
		return 0, fmt.Errorf("security.capability has unknown revision %#x", magic&vfsCapRevisionMask)
	}
	if len(b) != want {
		return 0, fmt.Errorf("security.capability revision %#x is %d bytes, want %d", magic>>24, len(b), want)
	}
	permitted := uint64(binary.LittleEndian.Uint32(b[4:]))
	if want > 12 {
		permitted |= uint64(binary.LittleEndian.Uint32(b[12:])) << 32
	}
	return permitted, nil
}

func (r *run) checkUserNS() Check {
	c := Check{ID: IDUserNS, Title: "unprivileged user namespaces", Hard: !r.h.rootful()}
	max, err := r.h.readTrim("/proc/sys/user/max_user_namespaces")
	n, convErr := strconv.Atoi(max)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Status = Fail
		c.Detail = "/proc/sys/user/max_user_namespaces is missing: the kernel was built without user namespaces"
	case err != nil || convErr != nil:
		c.Status = Fail
		c.Detail = fmt.Sprintf("cannot read /proc/sys/user/max_user_namespaces: %v", errors.Join(err, convErr))
	case n == 0:
		c.Status = Fail
		c.Detail = "user.max_user_namespaces is 0: nobody may create a user namespace (add the setting to /etc/sysctl.d/ to keep it after a reboot)"
		c.Fix = r.fix.sudo("sysctl -w user.max_user_namespaces=28633")
	default:
		c.Detail = "user.max_user_namespaces = " + max
	}
	// Debian kernels before 11 carried their own switch, off by default.
	if c.Status == OK {
		if v, err := r.h.readTrim("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && v == "0" {
			c.Status = Fail
			c.Detail = "kernel.unprivileged_userns_clone is 0: only root may create user namespaces"
			c.Fix = r.fix.sudo("sysctl -w kernel.unprivileged_userns_clone=1")
		}
	}
	if r.h.rootful() && c.Status == Fail {
		// Root's own namespaces do not need this; pods asking for a user
		// namespace of their own do.
		c.Status = Warn
		c.Detail += " (as root this only affects pods that ask for a user namespace)"
	}
	return c
}

func (r *run) checkAppArmorUserNS() Check {
	c := Check{ID: IDAppArmorUserNS, Title: "AppArmor user-namespace restriction", Hard: !r.h.rootful()}
	v, err := r.h.readTrim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Detail = "no restriction (kernel.apparmor_restrict_unprivileged_userns absent)"
	case err != nil:
		c.Status = Warn
		c.Detail = "cannot read kernel.apparmor_restrict_unprivileged_userns: " + err.Error()
	case v == "0":
		c.Detail = "kernel.apparmor_restrict_unprivileged_userns = 0"
	case r.h.rootful():
		c.Detail = "kernel.apparmor_restrict_unprivileged_userns = " + v + ": does not apply to root"
	default:
		c.Status = Fail
		c.Detail = "kernel.apparmor_restrict_unprivileged_userns = " + v +
			": AppArmor denies unconfined programs the capabilities of their user namespace (Ubuntu 23.10+); " +
			"alternatively give crib an AppArmor profile with the userns permission"
		c.Fix = r.fix.sudo("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
	}
	return c
}
