package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/procfs"
)

// Usage is one sample of a container's resource use.
type Usage struct {
	Timestamp        time.Time
	CPUUsageNs       uint64
	MemoryUsage      uint64
	MemoryWorkingSet uint64
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	Pids             uint64
	// Source is "cgroup", "proc" (no cgroup: summed over the container's
	// processes) or "none" (the container has no live process).
	Source string
}

// cpuSample is the previous CPU reading, for the usage rate.
type cpuSample struct {
	at    time.Time
	usage uint64
}

// SetRootfsUsage gives Stats the writable-layer measure of a container;
// Create takes it from CreateOptions, a restarted crib sets it again.
func (m *Manager) SetRootfsUsage(id string, fn func() (bytes, inodes uint64, err error)) {
	if fn != nil {
		m.rootfsUsage.Store(id, fn)
	}
}

// Usage samples the container's resource use from its cgroup, or, with no
// cgroup (rootless and unconfined), from its processes under /proc.
func (m *Manager) Usage(ctx context.Context, id string) (Usage, error) {
	c, err := m.Status(id)
	if err != nil {
		return Usage{}, err
	}
	now := time.Now()
	if m.cgroups != nil && c.CgroupsPath != "" {
		if st, err := m.cgroups.Stats(c.CgroupsPath); err == nil && st != nil {
			return Usage{
				Timestamp: now, CPUUsageNs: st.CPUUsageNs,
				MemoryUsage: st.MemoryUsage, MemoryWorkingSet: st.MemoryWorkingSet, MemoryRSS: st.MemoryRSS,
				PageFaults: st.PageFaults, MajorPageFaults: st.MajorPageFaults,
				Pids: st.Pids, Source: "cgroup",
			}, nil
		} else if err != nil && c.State == StateRunning {
			m.log.Debug("container cgroup unreadable; using /proc", "container", id, "err", err)
		}
	}
	if c.State != StateRunning || !processAlive(c.Pid) {
		return Usage{Timestamp: now, Source: "none"}, nil
	}
	return procUsage(c, now), nil
}

// Stats returns the container's CRI stats: CPU, memory and writable layer
// are always present (zero when there is nothing to measure).
func (m *Manager) Stats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error) {
	u, err := m.Usage(ctx, id)
	if err != nil {
		return nil, err
	}
	e, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	c := m.snapshot(e)
	ts := u.Timestamp.UnixNano()
	st := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id: c.ID, Metadata: c.Config.GetMetadata(),
			Labels: c.Labels, Annotations: c.Annotations,
		},
		Cpu: &runtimeapi.CpuUsage{
			Timestamp:            ts,
			UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: u.CPUUsageNs},
			UsageNanoCores:       &runtimeapi.UInt64Value{Value: m.cpuRate(e, u)},
		},
		Memory: &runtimeapi.MemoryUsage{
			Timestamp:       ts,
			WorkingSetBytes: &runtimeapi.UInt64Value{Value: u.MemoryWorkingSet},
			UsageBytes:      &runtimeapi.UInt64Value{Value: u.MemoryUsage},
			RssBytes:        &runtimeapi.UInt64Value{Value: u.MemoryRSS},
			PageFaults:      &runtimeapi.UInt64Value{Value: u.PageFaults},
			MajorPageFaults: &runtimeapi.UInt64Value{Value: u.MajorPageFaults},
		},
		WritableLayer: m.writableLayer(id, ts),
	}
	return st, nil
}

// cpuRate is the CPU use since the previous sample, in nanocores; the
// first sample (and a counter that went backwards, as a /proc sum does
// when a process exits) gives 0.
func (m *Manager) cpuRate(e *entry, u Usage) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := e.cpu
	e.cpu = cpuSample{at: u.Timestamp, usage: u.CPUUsageNs}
	dt := u.Timestamp.Sub(prev.at)
	if prev.at.IsZero() || dt <= 0 || u.CPUUsageNs < prev.usage {
		return 0
	}
	return uint64(float64(u.CPUUsageNs-prev.usage) / dt.Seconds())
}

func (m *Manager) writableLayer(id string, ts int64) *runtimeapi.FilesystemUsage {
	fs := &runtimeapi.FilesystemUsage{
		Timestamp:  ts,
		FsId:       &runtimeapi.FilesystemIdentifier{},
		UsedBytes:  &runtimeapi.UInt64Value{},
		InodesUsed: &runtimeapi.UInt64Value{},
	}
	v, ok := m.rootfsUsage.Load(id)
	if !ok {
		return fs
	}
	fn, _ := v.(func() (uint64, uint64, error))
	if fn == nil {
		return fs
	}
	if b, inodes, err := fn(); err == nil {
		fs.UsedBytes.Value, fs.InodesUsed.Value = b, inodes
	} else {
		m.log.Debug("measuring a writable layer", "container", id, "err", err)
	}
	return fs
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux architecture crib runs on.
const clockTicks = 100

// procUsage sums the container's processes: those in its own PID
// namespace, or (sharing one) those descended from its init.
func procUsage(c *Container, now time.Time) Usage {
	pids := containerPids(c)
	u := Usage{Timestamp: now, Source: "proc", Pids: uint64(len(pids))}
	page := uint64(os.Getpagesize())
	for _, pid := range pids {
		st, err := procfs.ReadStat(pid)
		if err != nil {
			continue
		}
		ticks := st.Utime + st.Stime + st.Cutime + st.Cstime
		u.CPUUsageNs += ticks * uint64(time.Second) / clockTicks
		u.MemoryRSS += st.RSSPages * page
		u.PageFaults += st.Minflt + st.Majflt
		u.MajorPageFaults += st.Majflt
	}
	u.MemoryUsage, u.MemoryWorkingSet = u.MemoryRSS, u.MemoryRSS
	return u
}

// containerPids lists the live processes of the container.
func containerPids(c *Container) []int {
	if c.OwnPIDNamespace {
		if ns := pidNamespace(c.Pid); ns != "" {
			var out []int
			for _, pid := range allPids() {
				if pidNamespace(pid) == ns && processAlive(pid) {
					out = append(out, pid)
				}
			}
			return out
		}
	}
	return append([]int{c.Pid}, procfs.Descendants(c.Pid)...)
}

func pidNamespace(pid int) string {
	ns, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", "pid"))
	return ns
}

func allPids() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}
