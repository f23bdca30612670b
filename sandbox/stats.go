package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/procfs"
)

// cpuSample is the previous CPU reading of a pod, for the usage rate.
type cpuSample struct {
	at    time.Time
	usage uint64
}

// usage is a pod's resource use, from its cgroup or, without one, summed
// over the processes in its namespaces.
type usage struct {
	cpuNs, memUsage, workingSet, rss, faults, majFaults, procs uint64
}

// Stats returns the pod's CPU, memory, network and process usage: from its
// cgroup where crib has one, else from /proc, and the network always from
// the pod's own network namespace. Every section is present, zero when
// there is nothing to count.
func (m *Manager) Stats(ctx context.Context, id string) (*runtimeapi.PodSandboxStats, error) {
	sb, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ts := now.UnixNano()
	u, err := m.usageOf(sb)
	if err != nil {
		return nil, fmt.Errorf("stats of pod %s: %w", id, err)
	}
	md := sb.Config.GetMetadata()
	linux := &runtimeapi.LinuxPodSandboxStats{
		Cpu: &runtimeapi.CpuUsage{
			Timestamp:            ts,
			UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: u.cpuNs},
			UsageNanoCores:       &runtimeapi.UInt64Value{Value: m.cpuRate(id, now, u.cpuNs)},
		},
		Memory: &runtimeapi.MemoryUsage{
			Timestamp:       ts,
			WorkingSetBytes: &runtimeapi.UInt64Value{Value: u.workingSet},
			UsageBytes:      &runtimeapi.UInt64Value{Value: u.memUsage},
			RssBytes:        &runtimeapi.UInt64Value{Value: u.rss},
			PageFaults:      &runtimeapi.UInt64Value{Value: u.faults},
			MajorPageFaults: &runtimeapi.UInt64Value{Value: u.majFaults},
		},
		Process: &runtimeapi.ProcessUsage{Timestamp: ts, ProcessCount: &runtimeapi.UInt64Value{Value: u.procs}},
		Network: &runtimeapi.NetworkUsage{Timestamp: ts},
	}
	ifaces, err := podInterfaces(sb)
	if err != nil {
		return nil, err
	}
	for _, c := range ifaces {
		i := c.usage()
		if i.Name == podIfName {
			linux.Network.DefaultInterface = i
		}
		linux.Network.Interfaces = append(linux.Network.Interfaces, i)
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id: sb.ID, Metadata: md, Labels: sb.Config.GetLabels(), Annotations: sb.Config.GetAnnotations(),
		},
		Linux: linux,
	}, nil
}

// cpuRate is the CPU use since the previous Stats of the pod, in
// nanocores (0 on the first call).
func (m *Manager) cpuRate(id string, now time.Time, usage uint64) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, ok := m.cpu[id]
	m.cpu[id] = cpuSample{at: now, usage: usage}
	if !ok || usage < prev.usage || !now.After(prev.at) {
		return 0
	}
	return uint64(float64(usage-prev.usage) / now.Sub(prev.at).Seconds())
}

func (m *Manager) usageOf(sb *Sandbox) (usage, error) {
	if sb.CgroupParent != "" {
		s, err := m.opts.Cgroups.Stats(sb.CgroupParent)
		if err == nil {
			return usage{cpuNs: s.CPUUsageNs, memUsage: s.MemoryUsage, workingSet: s.MemoryWorkingSet,
				rss: s.MemoryRSS, faults: s.PageFaults, majFaults: s.MajorPageFaults, procs: s.Pids}, nil
		}
		m.log.Debug("pod cgroup unreadable, counting processes instead", "pod", sb.ID, "err", err)
	}
	return processUsage(podMember(sb))
}

// podMember returns a test for "this /proc entry is one of the pod's
// processes": it shares the pod's own network, IPC or PID namespace. A pod
// with none of its own has no process crib can tell apart.
func podMember(sb *Sandbox) func(pid string) bool {
	type nsID struct{ dev, ino uint64 }
	idOf := func(path string) (nsID, bool) {
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil {
			return nsID{}, false
		}
		return nsID{st.Dev, st.Ino}, true
	}
	var kind string
	var want nsID
	for _, c := range []struct{ kind, path string }{{"net", sb.NetNSPath}, {"ipc", sb.IPCNSPath}, {"pid", sb.PIDNSPath}} {
		if c.path == "" {
			continue
		}
		if id, ok := idOf(c.path); ok {
			kind, want = c.kind, id
			break
		}
	}
	if kind == "" {
		return func(string) bool { return false }
	}
	return func(pid string) bool {
		id, ok := idOf(filepath.Join("/proc", pid, "ns", kind))
		return ok && id == want
	}
}

// processUsage sums CPU time, resident memory and faults of the processes
// member accepts.
func processUsage(member func(pid string) bool) (usage, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return usage{}, err
	}
	page := uint64(os.Getpagesize())
	var u usage
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' || !member(pid) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		st, err := procfs.ParseStat(b)
		if err != nil {
			continue
		}
		u.faults += st.Minflt + st.Majflt
		u.majFaults += st.Majflt
		u.cpuNs += (st.Utime + st.Stime) * uint64(time.Second) / clockTicks
		u.rss += st.RSSPages * page
		u.procs++
	}
	u.memUsage, u.workingSet = u.rss, u.rss
	return u, nil
}

// clockTicks is USER_HZ, which Linux fixes at 100 on every architecture Go
// supports for this build.
const clockTicks = 100

// InterfaceCounters are the kernel's counters of one network interface
// in a pod's network namespace, as /proc/net/dev shows them.
type InterfaceCounters struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

func (c InterfaceCounters) usage() *runtimeapi.NetworkInterfaceUsage {
	v := func(n uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: n} }
	return &runtimeapi.NetworkInterfaceUsage{
		Name: c.Name, RxBytes: v(c.RxBytes), RxErrors: v(c.RxErrors), TxBytes: v(c.TxBytes), TxErrors: v(c.TxErrors),
	}
}

// NetworkCounters reads the counters of every interface but loopback in
// the pod's network namespace; a pod without one of its own (host
// network, or stopped and its namespace released) has none.
func (m *Manager) NetworkCounters(ctx context.Context, id string) ([]InterfaceCounters, error) {
	sb, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	return podInterfaces(sb)
}

func podInterfaces(sb *Sandbox) ([]InterfaceCounters, error) {
	if sb.NetNSPath == "" || !isNamespacePin(sb.NetNSPath) {
		return nil, nil
	}
	ifaces, err := netDevInNamespace(sb.NetNSPath)
	if err != nil {
		return nil, fmt.Errorf("network counters of pod %s: %w", sb.ID, err)
	}
	return ifaces, nil
}

// netDevInNamespace reads /proc/<tid>/net/dev from a thread inside the
// pod's network namespace (sysfs would show crib's).
func netDevInNamespace(path string) ([]InterfaceCounters, error) {
	var data []byte
	err := inNamespace(path, nsNet, func() error {
		var err error
		data, err = os.ReadFile(fmt.Sprintf("/proc/self/task/%d/net/dev", unix.Gettid()))
		return err
	})
	if err != nil {
		return nil, err
	}
	return parseNetDev(data), nil
}

// parseNetDev parses /proc/net/dev, leaving out loopback. After the name,
// the columns are receive bytes, packets, errs, drop, fifo, frame,
// compressed, multicast, then transmit bytes, packets, errs, drop, fifo,
// colls, carrier, compressed.
func parseNetDev(data []byte) []InterfaceCounters {
	var out []InterfaceCounters
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if !ok || name == "lo" || len(f) < 16 {
			continue
		}
		num := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		out = append(out, InterfaceCounters{
			Name:    name,
			RxBytes: num(0), RxPackets: num(1), RxErrors: num(2), RxDropped: num(3),
			TxBytes: num(8), TxPackets: num(9), TxErrors: num(10), TxDropped: num(11),
		})
	}
	return out
}

// ListStats returns the stats of every Ready pod that keep accepts (nil:
// all); a pod that disappears meanwhile is skipped.
func (m *Manager) ListStats(ctx context.Context, keep func(*Sandbox) bool) ([]*runtimeapi.PodSandboxStats, error) {
	var out []*runtimeapi.PodSandboxStats
	for _, sb := range m.List() {
		if sb.State != StateReady || (keep != nil && !keep(sb)) {
			continue
		}
		s, err := m.Stats(ctx, sb.ID)
		if err != nil {
			if m.lookup(sb.ID) == nil {
				continue
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
