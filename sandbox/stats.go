package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/procfs"
	"github.com/crib-dev/crib/runtime/cgroups"
)

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
		Process: &runtimeapi.ProcessUsage{Timestamp: ts, ProcessCount: &runtimeapi.UInt64Value{Value: u.Pids}},
		Network: &runtimeapi.NetworkUsage{Timestamp: ts},
	}
	linux.Cpu, linux.Memory = u.CRI(ts, m.cpu.Rate(id, now, u.CPUUsageNs))
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

// usageOf reads the pod's cgroup, or, without one, sums the processes in
// its namespaces (the formula containers use too: procfs.Usage).
func (m *Manager) usageOf(sb *Sandbox) (cgroups.Stats, error) {
	if sb.CgroupParent != "" {
		s, err := m.opts.Cgroups.Stats(sb.CgroupParent)
		if err == nil {
			return *s, nil
		}
		m.log.Debug("pod cgroup unreadable, counting processes instead", "pod", sb.ID, "err", err)
	}
	pids, err := procfs.Pids()
	if err != nil {
		return cgroups.Stats{}, err
	}
	member := podMember(sb)
	return cgroups.ProcessStats(procfs.SumUsage(slices.DeleteFunc(pids, func(pid int) bool { return !member(pid) }))), nil
}

// podMember returns a test for "this process is one of the pod's": it
// shares the pod's own network, IPC or PID namespace. A pod with none of
// its own has no process crib can tell apart.
func podMember(sb *Sandbox) func(pid int) bool {
	for _, c := range []struct{ kind, path string }{{"net", sb.NetNSPath}, {"ipc", sb.IPCNSPath}, {"pid", sb.PIDNSPath}} {
		if c.path == "" {
			continue
		}
		if want, err := procfs.NamespaceFile(c.path); err == nil {
			return func(pid int) bool {
				id, err := procfs.Namespace(pid, c.kind)
				return err == nil && id == want
			}
		}
	}
	return func(int) bool { return false }
}

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
