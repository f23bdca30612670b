package runtime

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/procfs"
	"github.com/crib-dev/crib/runtime/cgroups"
)

// Usage is one sample of a container's resource use.
type Usage struct {
	Timestamp time.Time
	cgroups.Stats
	// Source is "cgroup", "proc" (no cgroup: summed over the container's
	// processes) or "none" (the container has no live process).
	Source string
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
			return Usage{Timestamp: now, Stats: *st, Source: "cgroup"}, nil
		} else if err != nil && c.State == StateRunning {
			m.log.Debug("container cgroup unreadable; using /proc", "container", id, "err", err)
		}
	}
	if c.State != StateRunning || !processAlive(c.Pid) {
		return Usage{Timestamp: now, Source: "none"}, nil
	}
	return Usage{Timestamp: now, Stats: cgroups.ProcessStats(procfs.SumUsage(containerPids(c))), Source: "proc"}, nil
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
		WritableLayer: m.writableLayer(ctx, id, ts),
	}
	st.Cpu, st.Memory = u.CRI(ts, m.cpu.Rate(id, u.Timestamp, u.CPUUsageNs))
	return st, nil
}

func (m *Manager) writableLayer(ctx context.Context, id string, ts int64) *runtimeapi.FilesystemUsage {
	fs := &runtimeapi.FilesystemUsage{
		Timestamp:  ts,
		FsId:       &runtimeapi.FilesystemIdentifier{},
		UsedBytes:  &runtimeapi.UInt64Value{},
		InodesUsed: &runtimeapi.UInt64Value{},
	}
	if m.rootfsUsage == nil {
		return fs
	}
	if b, inodes, err := m.rootfsUsage(ctx, id); err == nil {
		fs.UsedBytes.Value, fs.InodesUsed.Value = b, inodes
	} else {
		m.log.Debug("measuring a writable layer", "container", id, "err", err)
	}
	return fs
}

// containerPids lists the live processes of the container.
func containerPids(c *Container) []int {
	if c.OwnPIDNamespace {
		if ns := pidNamespace(c.Pid); !ns.IsZero() {
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

// pidNamespace is the identity of pid's PID namespace; zero when pid is
// gone.
func pidNamespace(pid int) procfs.FileID {
	ns, _ := procfs.Namespace(pid, "pid")
	return ns
}

// allPids lists the processes in crib's view of /proc.
func allPids() []int {
	pids, _ := procfs.Pids()
	return pids
}
