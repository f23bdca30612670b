package cgroups

import (
	"testing"

	"github.com/crib-dev/crib/internal/procfs"
)

func TestProcessStatsAndCRI(t *testing.T) {
	u := procfs.Usage{CPUNs: 9, UserNs: 5, SystemNs: 4, RSSBytes: 8192, Faults: 7, MajorFaults: 2, Procs: 3}
	s := ProcessStats(u)
	want := Stats{CPUUsageNs: 9, MemoryUsage: 8192, MemoryWorkingSet: 8192, MemoryRSS: 8192, PageFaults: 7, MajorPageFaults: 2, Pids: 3}
	if s != want {
		t.Fatalf("ProcessStats = %+v, want %+v", s, want)
	}
	cpu, mem := s.CRI(42, 500)
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"cpu timestamp", uint64(cpu.GetTimestamp()), 42},
		{"core nanoseconds", cpu.GetUsageCoreNanoSeconds().GetValue(), 9},
		{"nanocores", cpu.GetUsageNanoCores().GetValue(), 500},
		{"memory timestamp", uint64(mem.GetTimestamp()), 42},
		{"working set", mem.GetWorkingSetBytes().GetValue(), 8192},
		{"usage", mem.GetUsageBytes().GetValue(), 8192},
		{"rss", mem.GetRssBytes().GetValue(), 8192},
		{"page faults", mem.GetPageFaults().GetValue(), 7},
		{"major page faults", mem.GetMajorPageFaults().GetValue(), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}
