package cgroups

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/procfs"
)

// ProcessStats is the usage of processes crib has no cgroup for, summed
// from /proc (procfs.Usage's formula): with no cgroup, their resident set
// is all crib can call memory use and working set.
func ProcessStats(u procfs.Usage) Stats {
	return Stats{
		CPUUsageNs: u.CPUNs, MemoryUsage: u.RSSBytes, MemoryWorkingSet: u.RSSBytes, MemoryRSS: u.RSSBytes,
		PageFaults: u.Faults, MajorPageFaults: u.MajorFaults, Pids: u.Procs,
	}
}

// CRI is the CPU and memory sections of the CRI stats of a pod or a
// container sampled at ts (Unix nanoseconds); nanoCores is the rate
// procfs.CPUSampler gave. Every figure is present, zero when unknown.
func (s Stats) CRI(ts int64, nanoCores uint64) (*runtimeapi.CpuUsage, *runtimeapi.MemoryUsage) {
	v := func(n uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: n} }
	return &runtimeapi.CpuUsage{
			Timestamp: ts, UsageCoreNanoSeconds: v(s.CPUUsageNs), UsageNanoCores: v(nanoCores),
		}, &runtimeapi.MemoryUsage{
			Timestamp: ts, WorkingSetBytes: v(s.MemoryWorkingSet), UsageBytes: v(s.MemoryUsage), RssBytes: v(s.MemoryRSS),
			PageFaults: v(s.PageFaults), MajorPageFaults: v(s.MajorPageFaults),
		}
}
