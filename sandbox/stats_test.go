package sandbox

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/crib-dev/crib/internal/procfs"
)

// TestUsageWithoutCgroup: a pod with no cgroup is measured over the
// processes in its namespaces, with the formula containers use.
func TestUsageWithoutCgroup(t *testing.T) {
	m := &Manager{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	own, err := m.usageOf(&Sandbox{ID: "mine", NetNSPath: "/proc/self/ns/net"})
	if err != nil {
		t.Fatal(err)
	}
	// The test process is in that network namespace.
	self := procfs.SumUsage([]int{os.Getpid()})
	if own.Pids < 1 || own.MemoryRSS < self.RSSBytes/2 || own.CPUUsageNs < self.CPUNs ||
		own.MemoryWorkingSet != own.MemoryRSS || own.MemoryUsage != own.MemoryRSS || own.PageFaults < own.MajorPageFaults {
		t.Errorf("usage of the processes in our network namespace: %+v (this process alone: %+v)", own, self)
	}
	none, err := m.usageOf(&Sandbox{ID: "host"})
	if err != nil || none.Pids != 0 || none.CPUUsageNs != 0 {
		t.Errorf("a pod with no namespace of its own: %+v, %v; want nothing counted", none, err)
	}
}
