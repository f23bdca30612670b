package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/selinux/go-selinux"
	"github.com/opencontainers/selinux/go-selinux/label"
	"golang.org/x/sys/unix"
)

// ProbeHost reads the HostInfo of the running system, as seen from crib's
// own namespaces. RecursiveReadOnly reflects only the kernel: the caller
// must clear it for an OCI runtime that lacks "rro" (runc before 1.2).
func ProbeHost() (HostInfo, error) {
	var h HostInfo
	var err error
	if h.BoundingCaps, err = boundingCapabilities(); err != nil {
		return HostInfo{}, err
	}
	if h.MinOOMScoreAdj, err = currentOOMScoreAdj(); err != nil {
		return HostInfo{}, err
	}
	if h.HugepageSizes, err = hugepageSizes("/sys/kernel/mm/hugepages"); err != nil {
		return HostInfo{}, err
	}
	if h.Devices, err = HostDevices(); err != nil {
		return HostInfo{}, err
	}
	if h.CgroupV2, err = unifiedCgroups(); err != nil {
		return HostInfo{}, err
	}
	h.SwapControl = swapAccounting(h.CgroupV2)
	h.SeccompEnabled = seccompFiltersWork()
	h.AppArmorEnabled = appArmorEnabled()
	h.SELinuxEnabled = selinux.GetEnabled()
	if h.RecursiveReadOnly, err = kernelAtLeast(5, 12); err != nil {
		return HostInfo{}, err
	}
	return h, nil
}

// systemProbes read the running system.
func systemProbes() hostProbes {
	return hostProbes{
		mounts:         currentMounts,
		device:         deviceAt,
		appArmorLoaded: appArmorProfileLoaded,
		relabel: func(path, mountLabel string) error {
			return label.Relabel(path, mountLabel, false)
		},
		exists: func(path string) bool {
			_, err := os.Stat(path)
			return err == nil
		},
	}
}

func currentMounts() ([]mountEntry, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	out := make([]mountEntry, len(infos))
	for i, m := range infos {
		out[i] = mountEntry{Mountpoint: m.Mountpoint, Optional: m.Optional}
	}
	return out, nil
}

// boundingCapabilities lists crib's bounding set by CAP_ name.
func boundingCapabilities() ([]string, error) {
	c, err := capability.NewPid2(0)
	if err != nil {
		return nil, fmt.Errorf("read capabilities: %w", err)
	}
	if err := c.Load(); err != nil {
		return nil, fmt.Errorf("read capabilities: %w", err)
	}
	var out []string
	for _, cp := range capability.ListKnown() {
		if c.Get(capability.BOUNDING, cp) {
			out = append(out, "CAP_"+strings.ToUpper(cp.String()))
		}
	}
	return out, nil
}

func currentOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, fmt.Errorf("read oom_score_adj: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse oom_score_adj %q: %w", b, err)
	}
	return n, nil
}

// hugepageSizes turns the directories of /sys/kernel/mm/hugepages
// ("hugepages-2048kB") into CRI page sizes ("2MB"). No directory means no
// hugepage support.
func hugepageSizes(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list hugepage sizes: %w", err)
	}
	var out []string
	for _, e := range entries {
		kb, ok := strings.CutPrefix(e.Name(), "hugepages-")
		kb, ok2 := strings.CutSuffix(kb, "kB")
		n, err := strconv.ParseUint(kb, 10, 64)
		if !ok || !ok2 || err != nil {
			continue
		}
		out = append(out, pageSizeName(n))
	}
	return out, nil
}

// pageSizeName spells a size in KiB with the largest binary unit that
// divides it exactly: 2048 → "2MB", 1048576 → "1GB", 64 → "64KB".
func pageSizeName(kib uint64) string {
	units := []string{"KB", "MB", "GB", "TB"}
	i := 0
	for kib >= 1024 && kib%1024 == 0 && i < len(units)-1 {
		kib /= 1024
		i++
	}
	return strconv.FormatUint(kib, 10) + units[i]
}

func unifiedCgroups() (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return false, fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC, nil
}

// swapAccounting reports whether swap limits exist: memory.memsw.* on v1,
// memory.swap.max on v2 (absent at the root, so look one level down too).
func swapAccounting(v2 bool) bool {
	if !v2 {
		_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
		return err == nil
	}
	found, _ := filepath.Glob("/sys/fs/cgroup/*/memory.swap.max")
	return len(found) > 0
}

// seccompFiltersWork asks the kernel to install a filter from a NULL
// program: EFAULT means filters are supported (nothing is installed),
// EINVAL that they are not.
func seccompFiltersWork() bool {
	err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, 0, 0, 0)
	return errors.Is(err, unix.EFAULT)
}

func appArmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && bytes.HasPrefix(b, []byte("Y"))
}

// appArmorProfileLoaded looks the profile up in the kernel's list, whose
// lines read "name (mode)".
func appArmorProfileLoaded(profile string) (bool, error) {
	f, err := os.Open("/sys/kernel/security/apparmor/profiles")
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, _, _ := strings.Cut(s.Text(), " (")
		if name == profile {
			return true, nil
		}
	}
	return false, s.Err()
}

func kernelAtLeast(major, minor int) (bool, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false, fmt.Errorf("uname: %w", err)
	}
	return releaseAtLeast(unix.ByteSliceToString(u.Release[:]), major, minor), nil
}

// releaseAtLeast compares a kernel release ("6.1.0-18-amd64") with major.minor.
func releaseAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err1 := strconv.Atoi(parts[0])
	mnr, err2 := strconv.Atoi(leadingDigits(parts[1]))
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > major || (maj == major && mnr >= minor)
}

// leadingDigits cuts "12-rc1" to "12".
func leadingDigits(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		return s
	}
	return s[:i]
}
