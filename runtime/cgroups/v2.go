package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// v2Wanted are the cgroup v2 controllers crib enables for pods when the
// base has them.
var v2Wanted = []string{"cpu", "cpuset", "io", "memory", "pids"}

// v2 is the cgroupfs manager of a unified (cgroup v2) host with a
// delegated base. Pod paths are absolute within the unified hierarchy,
// which runc's cgroupfs driver takes as they are.
type v2 struct {
	root        string   // the cgroup2 mount, /sys/fs/cgroup
	base        string   // absolute directory of the delegated base
	controllers []string // of v2Wanted, those the base offers
}

func (m *v2) Name() string { return "cgroupfs" }
func (m *v2) Version() int { return 2 }

// Controllers are the controllers enabled for pods.
func (m *v2) Controllers() []string { return m.controllers }

func (m *v2) dir(path string) string { return filepath.Join(m.root, path) }

func (m *v2) CreatePod(id, parent string, res, overhead *runtimeapi.LinuxContainerResources) (string, error) {
	if err := checkParent(parent); err != nil {
		return "", err
	}
	dir := filepath.Join(m.base, parent, podDirName(id))
	rel, _ := filepath.Rel(m.root, dir)
	path := "/" + rel
	// Controllers must be enabled in every level above the pod, the base
	// included, and in the pod itself for its containers.
	if err := m.enableSubtree(m.base); err != nil {
		return "", err
	}
	created, err := mkdirLevels(m.base, dir)
	if err != nil {
		m.RemovePod(path)
		return "", err
	}
	for _, d := range created {
		if err := m.enableSubtree(d); err != nil {
			m.RemovePod(path)
			return "", err
		}
	}
	if err := applyV2(dir, computeLimits(res, overhead)); err != nil {
		m.RemovePod(path)
		return "", err
	}
	return path, nil
}

func (m *v2) enableSubtree(dir string) error {
	if len(m.controllers) == 0 {
		return nil
	}
	var b strings.Builder
	for i, c := range m.controllers {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("+" + c)
	}
	return writeFile(dir, "cgroup.subtree_control", b.String())
}

func applyV2(dir string, l podLimits) error {
	var sets [][2]string
	if l.memory > 0 {
		sets = append(sets, [2]string{"memory.max", strconv.FormatInt(l.memory, 10)})
	}
	if l.cpuQuota > 0 {
		sets = append(sets, [2]string{"cpu.max", fmt.Sprintf("%d %d", l.cpuQuota, l.cpuPeriod)})
	}
	if w := sharesToWeight(l.cpuShares); w > 0 {
		sets = append(sets, [2]string{"cpu.weight", strconv.FormatUint(w, 10)})
	}
	return writeFiles(dir, append(sets, l.cpusetFiles()...))
}

func (m *v2) RemovePod(path string) error {
	if path == "" {
		return nil
	}
	dir := m.dir(path)
	if err := removeDir(dir); err != nil {
		return err
	}
	removeEmptyLevels(m.base, filepath.Dir(dir))
	return nil
}

func (m *v2) Stats(path string) (*Stats, error) {
	dir := m.dir(path)
	cpu, err := readKeyed(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return nil, fmt.Errorf("reading cgroup %s: %w", path, err)
	}
	s := &Stats{CPUUsageNs: cpu["usage_usec"] * 1000}
	if v, err := readUint(filepath.Join(dir, "memory.current")); err == nil {
		s.MemoryUsage = v
		st, _ := readKeyed(filepath.Join(dir, "memory.stat"))
		s.MemoryRSS = st["anon"]
		s.PageFaults = st["pgfault"]
		s.MajorPageFaults = st["pgmajfault"]
		s.MemoryWorkingSet = workingSet(v, st["inactive_file"])
		ev, _ := readKeyed(filepath.Join(dir, "memory.events"))
		s.OOMKills = ev["oom_kill"]
	}
	if v, err := readUint(filepath.Join(dir, "pids.current")); err == nil {
		s.Pids = v
	}
	return s, nil
}

func (m *v2) ContainerPath(podPath, containerID string) string {
	if podPath == "" {
		return ""
	}
	return filepath.Join(podPath, "crib-"+containerID)
}

// hasProcesses reports whether a v2 cgroup holds processes, which forbids
// enabling controllers for its children.
func hasProcesses(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	return err == nil && strings.TrimSpace(string(b)) != ""
}
