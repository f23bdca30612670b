package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Manager creates and removes pod cgroups and reads their statistics.
//
// A pod path is the manager's own name for a pod cgroup: callers store it,
// hand it back to RemovePod and Stats, and ask ContainerPath for the
// cgroupsPath of an OCI spec. The "none" manager returns "" for every pod.
type Manager interface {
	// Name is cgroupfs or none. crib drives cgroups through cgroupfs
	// only, also under systemd (which delegates it a subtree), so the CRI
	// cgroup driver it reports is always cgroupfs.
	Name() string
	// Version is 1 or 2, or 0 for none.
	Version() int
	// CreatePod makes the cgroup of pod id below parent (a path inside
	// crib's subtree; "" means the subtree itself) and applies the pod-level
	// resources plus the overhead. Both may be nil.
	CreatePod(id, parent string, res, overhead *runtimeapi.LinuxContainerResources) (string, error)
	// RemovePod removes a pod cgroup CreatePod made; a missing one is not
	// an error.
	RemovePod(path string) error
	// Stats reads the usage of a pod (or container) cgroup.
	Stats(path string) (*Stats, error)
	// Metrics reads Stats plus the detail of the kubelet's CRI metrics:
	// CPU split and throttling, memory detail, limits, block I/O and the
	// processes in the cgroup.
	Metrics(path string) (*Metrics, error)
	// ContainerPath is the OCI cgroupsPath for a container of the pod.
	ContainerPath(podPath, containerID string) string
}

// Stats is the usage of one cgroup, in the units the CRI uses.
type Stats struct {
	CPUUsageNs       uint64
	MemoryUsage      uint64
	MemoryWorkingSet uint64
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	Pids             uint64
	OOMKills         uint64
}

// podDirName is the directory crib gives a pod cgroup; the prefix marks it
// as crib's own.
func podDirName(id string) string { return "crib-pod-" + id }

// checkParent refuses a cgroup_parent that would climb out of crib's
// subtree; the parent is always taken relative to that subtree.
func checkParent(p string) error {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("%w: cgroup parent %q must not contain \"..\"", errdefs.ErrInvalidArgument, p)
		}
	}
	return nil
}

// podLimits is what a pod cgroup is limited to: the pod-level resources
// plus the overhead, where a pod-level value exists to add it to (overhead
// alone is not a limit).
type podLimits struct {
	memory     int64 // bytes; 0 = unlimited
	cpuQuota   int64 // µs per period; 0 = unlimited
	cpuPeriod  uint64
	cpuShares  uint64
	cpusetCpus string
	cpusetMems string
}

func computeLimits(res, overhead *runtimeapi.LinuxContainerResources) podLimits {
	var l podLimits
	if res == nil {
		return l
	}
	if overhead == nil {
		overhead = &runtimeapi.LinuxContainerResources{}
	}
	if res.MemoryLimitInBytes > 0 {
		l.memory = res.MemoryLimitInBytes + max(overhead.MemoryLimitInBytes, 0)
	}
	if res.CpuQuota > 0 {
		l.cpuPeriod = uint64(res.CpuPeriod)
		if l.cpuPeriod == 0 {
			l.cpuPeriod = 100000
		}
		l.cpuQuota = res.CpuQuota
		if overhead.CpuQuota > 0 {
			op := overhead.CpuPeriod
			if op <= 0 {
				op = 100000
			}
			// Overhead may use another period: scale it to ours.
			l.cpuQuota += overhead.CpuQuota * int64(l.cpuPeriod) / op
		}
	}
	if res.CpuShares > 0 {
		l.cpuShares = uint64(res.CpuShares + max(overhead.CpuShares, 0))
	}
	l.cpusetCpus, l.cpusetMems = res.CpusetCpus, res.CpusetMems
	return l
}

// sharesToWeight maps cgroup v1 cpu.shares [2, 262144] onto cgroup v2
// cpu.weight [1, 10000], the conversion runc and the kubelet use.
func sharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

// cpusetFiles are the cpuset settings of l: the same files on v1 and v2.
func (l podLimits) cpusetFiles() [][2]string {
	var sets [][2]string
	if l.cpusetCpus != "" {
		sets = append(sets, [2]string{"cpuset.cpus", l.cpusetCpus})
	}
	if l.cpusetMems != "" {
		sets = append(sets, [2]string{"cpuset.mems", l.cpusetMems})
	}
	return sets
}

// writeFiles writes each {file, value} into dir, stopping at the first
// failure.
func writeFiles(dir string, sets [][2]string) error {
	for _, s := range sets {
		if err := writeFile(dir, s[0], s[1]); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o644); err != nil {
		return fmt.Errorf("setting %s in %s: %w", name, dir, err)
	}
	return nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// readKeyed parses "key value" lines (memory.stat, cpu.stat, memory.events).
func readKeyed(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, nil
}

// removeDir removes a cgroup directory; cgroupfs refuses RemoveAll's
// unlinking of the control files, so only rmdir, leaf first.
func removeDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading cgroup %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeDir(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing cgroup %s: %w", dir, err)
	}
	return nil
}

// none is the manager of a host where crib may not write any cgroup.
type none struct{}

// None returns the manager that confines nothing.
func None() Manager { return none{} }

func (none) Name() string { return "none" }
func (none) Version() int { return 0 }
func (none) CreatePod(string, string, *runtimeapi.LinuxContainerResources, *runtimeapi.LinuxContainerResources) (string, error) {
	return "", nil
}
func (none) RemovePod(string) error { return nil }
func (none) Stats(string) (*Stats, error) {
	return nil, fmt.Errorf("no cgroups: crib runs pods unconfined: %w", errdefs.ErrUnavailable)
}
func (none) ContainerPath(string, string) string { return "" }

// AsksForLimits reports whether r asks for any limit a cgroup enforces,
// so that a pod or container run unconfined can be warned about.
func AsksForLimits(r *runtimeapi.LinuxContainerResources) bool {
	if r == nil {
		return false
	}
	return r.MemoryLimitInBytes > 0 || r.CpuQuota > 0 || r.CpuShares > 0 ||
		r.CpusetCpus != "" || r.CpusetMems != "" || r.MemorySwapLimitInBytes > 0 ||
		len(r.HugepageLimits) > 0 || len(r.Unified) > 0
}
