package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// v1Controllers are the cgroup v1 hierarchies crib manages when delegated.
// Beyond those it limits, it makes and removes the pod level in every
// hierarchy runc joins (devices, freezer, the named systemd one ...):
// runc creates the container's cgroup below it in each, and would leave
// the pod level behind.
var v1Controllers = []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "blkio",
	"devices", "freezer", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "name=systemd"}

// hierarchyDir is the directory a v1 hierarchy is mounted at under the
// cgroup root: a named hierarchy "name=systemd" lives at "systemd".
func hierarchyDir(c string) string { return strings.TrimPrefix(c, "name=") }

// v1 is the cgroupfs manager of a cgroup v1 (or hybrid) host. Each
// controller has its own hierarchy and its own delegated base, so a pod
// path is kept in the form runc understands for every hierarchy at once:
// relative to crib's own cgroup (runc resolves a relative cgroupsPath
// against its own cgroup, which conmon and runc inherit from crib), or
// absolute when the bases sit at the same place in every hierarchy.
type v1 struct {
	root     string            // the v1 mount root, /sys/fs/cgroup
	own      map[string]string // controller → crib's cgroup when detected
	bases    map[string]string // controller → absolute directory of the delegated base
	prefix   string            // pod paths start here (relative or absolute form)
	relative bool
}

func (m *v1) Name() string { return "cgroupfs" }
func (m *v1) Version() int { return 1 }

// Controllers lists the controllers crib may write, sorted as v1Controllers.
func (m *v1) Controllers() []string {
	var out []string
	for _, c := range v1Controllers {
		if _, ok := m.bases[c]; ok {
			out = append(out, c)
		}
	}
	return out
}

// dir maps a pod path onto controller c's hierarchy.
func (m *v1) dir(c, path string) string {
	if m.relative {
		return filepath.Join(m.root, hierarchyDir(c), m.own[c], path)
	}
	return filepath.Join(m.root, hierarchyDir(c), path)
}

func (m *v1) CreatePod(id, parent string, res, overhead *runtimeapi.LinuxContainerResources) (string, error) {
	if err := checkParent(parent); err != nil {
		return "", err
	}
	path := filepath.Join(m.prefix, parent, podDirName(id))
	if !m.relative {
		path = filepath.Join("/", path)
	}
	limits := computeLimits(res, overhead)
	for _, c := range m.Controllers() {
		if err := m.createIn(c, path, limits); err != nil {
			m.RemovePod(path)
			return "", err
		}
	}
	return path, nil
}

func (m *v1) createIn(c, path string, l podLimits) error {
	dir := m.dir(c, path)
	created, err := mkdirLevels(m.bases[c], dir)
	if err != nil {
		return fmt.Errorf("creating %s cgroup: %w", c, err)
	}
	if c == "cpuset" {
		// A new cpuset is empty and refuses tasks until it gets its
		// parent's cpus and mems.
		for _, d := range created {
			if err := inheritCpuset(d); err != nil {
				return err
			}
		}
	}
	return applyV1(c, dir, l)
}

func applyV1(c, dir string, l podLimits) error {
	var sets [][2]string
	switch c {
	case "memory":
		if l.memory > 0 {
			sets = append(sets, [2]string{"memory.limit_in_bytes", strconv.FormatInt(l.memory, 10)})
		}
	case "cpu":
		if l.cpuShares > 0 {
			sets = append(sets, [2]string{"cpu.shares", strconv.FormatUint(l.cpuShares, 10)})
		}
		if l.cpuQuota > 0 {
			sets = append(sets,
				[2]string{"cpu.cfs_period_us", strconv.FormatUint(l.cpuPeriod, 10)},
				[2]string{"cpu.cfs_quota_us", strconv.FormatInt(l.cpuQuota, 10)})
		}
	case "cpuset":
		sets = l.cpusetFiles()
	}
	return writeFiles(dir, sets)
}

func inheritCpuset(dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			return fmt.Errorf("reading the parent's %s: %w", f, err)
		}
		if err := writeFile(dir, f, strings.TrimSpace(string(b))); err != nil {
			return err
		}
	}
	return nil
}

// RemovePod removes the pod cgroup in every hierarchy, then the empty
// levels between it and the base that a cgroup_parent made.
func (m *v1) RemovePod(path string) error {
	if path == "" {
		return nil
	}
	var errs []error
	for _, c := range m.Controllers() {
		dir := m.dir(c, path)
		if err := removeDir(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removeEmptyLevels(m.bases[c], filepath.Dir(dir))
	}
	return errors.Join(errs...)
}

func (m *v1) Stats(path string) (*Stats, error) {
	s := &Stats{}
	found := false
	if _, ok := m.bases["cpuacct"]; ok {
		if v, err := readUint(filepath.Join(m.dir("cpuacct", path), "cpuacct.usage")); err == nil {
			s.CPUUsageNs, found = v, true
		}
	}
	if _, ok := m.bases["memory"]; ok {
		dir := m.dir("memory", path)
		if v, err := readUint(filepath.Join(dir, "memory.usage_in_bytes")); err == nil {
			s.MemoryUsage, found = v, true
			st, _ := readKeyed(filepath.Join(dir, "memory.stat"))
			s.MemoryRSS = st["total_rss"]
			s.PageFaults = st["total_pgfault"]
			s.MajorPageFaults = st["total_pgmajfault"]
			s.MemoryWorkingSet = workingSet(s.MemoryUsage, st["total_inactive_file"])
			oom, _ := readKeyed(filepath.Join(dir, "memory.oom_control"))
			s.OOMKills = oom["oom_kill"]
		}
	}
	if _, ok := m.bases["pids"]; ok {
		if v, err := readUint(filepath.Join(m.dir("pids", path), "pids.current")); err == nil {
			s.Pids, found = v, true
		}
	}
	if !found {
		return nil, fmt.Errorf("cgroup %s: no statistics readable: %w", path, os.ErrNotExist)
	}
	return s, nil
}

// workingSet is usage minus the inactive file cache, as the kubelet counts it.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}

func (m *v1) ContainerPath(podPath, containerID string) string {
	if podPath == "" {
		return ""
	}
	return filepath.Join(podPath, "crib-"+containerID)
}

// mkdirLevels creates dir and any missing level between base and dir,
// returning the levels it created, top first. dir must be inside base.
func mkdirLevels(base, dir string) ([]string, error) {
	rel, err := filepath.Rel(base, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("cgroup %s is outside crib's base %s", dir, base)
	}
	var created []string
	cur := base
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if part == "." || part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		err := os.Mkdir(cur, 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return created, fmt.Errorf("creating cgroup %s: %w", cur, err)
		}
		created = append(created, cur)
	}
	return created, nil
}

// removeEmptyLevels rmdirs dir and its parents up to, not including, base;
// rmdir fails on a cgroup with children or processes, which stops it.
func removeEmptyLevels(base, dir string) {
	for {
		rel, err := filepath.Rel(base, dir)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return
		}
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}
