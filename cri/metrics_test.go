package cri

import (
	"context"
	"fmt"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
)

// The managers are stand-ins holding fixed measurements: what is tested
// here is the translation into CRI metrics, not the measuring, which the
// sandbox and runtime packages test against real cgroups and /proc. Only
// the methods the metrics calls use are implemented; any other panics.
type metricsPods struct {
	PodManager
	pods  []*sandbox.Sandbox
	stats map[string]*runtimeapi.PodSandboxStats
}

func (f metricsPods) List() []*sandbox.Sandbox { return f.pods }
func (f metricsPods) Stats(_ context.Context, id string) (*runtimeapi.PodSandboxStats, error) {
	if st, ok := f.stats[id]; ok {
		return st, nil
	}
	return nil, fmt.Errorf("pod %s: %w", id, errdefs.ErrNotFound)
}

type metricsContainers struct {
	ContainerManager
	list  []*runtime.Container
	usage map[string]runtime.Usage
}

func (f metricsContainers) List() []*runtime.Container   { return f.list }
func (f metricsContainers) Events() <-chan runtime.Event { return nil }
func (f metricsContainers) Usage(_ context.Context, id string) (runtime.Usage, error) {
	if u, ok := f.usage[id]; ok {
		return u, nil
	}
	return runtime.Usage{}, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
}

func newMetricsService() *RuntimeService {
	podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"}}
	iface := &runtimeapi.NetworkInterfaceUsage{
		Name: "eth0", RxBytes: &runtimeapi.UInt64Value{Value: 1000}, RxErrors: &runtimeapi.UInt64Value{Value: 1},
		TxBytes: &runtimeapi.UInt64Value{Value: 2000}, TxErrors: &runtimeapi.UInt64Value{Value: 2},
	}
	pods := metricsPods{
		pods: []*sandbox.Sandbox{
			{ID: "pod1", Config: podCfg, State: sandbox.StateReady},
			{ID: "gone", Config: podCfg, State: sandbox.StateReady}, // removed while listed
		},
		stats: map[string]*runtimeapi.PodSandboxStats{"pod1": {Linux: &runtimeapi.LinuxPodSandboxStats{
			Network: &runtimeapi.NetworkUsage{Interfaces: []*runtimeapi.NetworkInterfaceUsage{iface}},
		}}},
	}
	ctrCfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "nginx"}}
	ctrs := metricsContainers{
		list: []*runtime.Container{
			{ID: "c1", SandboxID: "pod1", Config: ctrCfg, ImageRef: "docker.io/library/nginx:1", State: runtime.StateRunning},
			{ID: "c2", SandboxID: "pod1", Config: ctrCfg, State: runtime.StateExited},
		},
		usage: map[string]runtime.Usage{"c1": {
			CPUUsageNs: 2_700_000_000, MemoryUsage: 300, MemoryWorkingSet: 200, MemoryRSS: 100,
			PageFaults: 7, MajorPageFaults: 1, Pids: 3,
		}},
	}
	return NewRuntimeService(Options{Pods: pods, Containers: ctrs})
}

func TestListMetricDescriptors(t *testing.T) {
	s := newMetricsService()
	resp, err := s.ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range resp.Descriptors {
		if seen[d.Name] {
			t.Errorf("descriptor %s twice", d.Name)
		}
		seen[d.Name] = true
		if d.Help == "" {
			t.Errorf("%s has no help", d.Name)
		}
		// The kubelet appends these itself; a duplicate label name makes
		// its descriptor invalid.
		for _, k := range []string{"namespace", "pod", "container"} {
			if slices.Contains(d.LabelKeys, k) {
				t.Errorf("%s repeats the kubelet's label %q", d.Name, k)
			}
		}
	}
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_network_receive_bytes_total", "container_processes"} {
		if !seen[name] {
			t.Errorf("no descriptor for %s", name)
		}
	}
}

func TestListPodSandboxMetrics(t *testing.T) {
	s := newMetricsService()
	ctx := context.Background()
	descs, _ := s.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	keys := map[string][]string{}
	for _, d := range descs.Descriptors {
		keys[d.Name] = d.LabelKeys
	}
	resp, err := s.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.PodMetrics) != 1 || resp.PodMetrics[0].PodSandboxId != "pod1" {
		t.Fatalf("pod metrics %v, want pod1 only (gone was removed)", resp.PodMetrics)
	}
	pm := resp.PodMetrics[0]
	if len(pm.ContainerMetrics) != 1 || pm.ContainerMetrics[0].ContainerId != "c1" {
		t.Fatalf("container metrics %v, want the running c1 only", pm.ContainerMetrics)
	}
	got := map[string]uint64{}
	all := append(slices.Clone(pm.Metrics), pm.ContainerMetrics[0].Metrics...)
	for _, m := range all {
		k, ok := keys[m.Name]
		if !ok {
			t.Fatalf("metric %s has no descriptor", m.Name)
		}
		if len(k) != len(m.LabelValues) {
			t.Fatalf("%s: %d label values for keys %v", m.Name, len(m.LabelValues), k)
		}
		if m.Timestamp != 0 {
			t.Errorf("%s: timestamp %d, want 0 (measured on request)", m.Name, m.Timestamp)
		}
		got[m.Name] = m.Value.GetValue()
	}
	want := map[string]uint64{
		"container_cpu_usage_seconds_total":       2,
		"container_memory_usage_bytes":            300,
		"container_memory_working_set_bytes":      200,
		"container_memory_rss":                    100,
		"container_memory_failures_total":         7,
		"container_memory_major_failures_total":   1,
		"container_processes":                     3,
		"container_fs_usage_bytes":                0, // no rootfs store wired
		"container_fs_inodes_used":                0,
		"container_network_receive_bytes_total":   1000,
		"container_network_receive_errors_total":  1,
		"container_network_transmit_bytes_total":  2000,
		"container_network_transmit_errors_total": 2,
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %d (present %v), want %d", name, g, ok, v)
		}
	}
	c := pm.ContainerMetrics[0].Metrics[0]
	if !slices.Equal(c.LabelValues, []string{"c1", "docker.io/library/nginx:1", "nginx_pod1_0"}) {
		t.Errorf("container labels %v", c.LabelValues)
	}
	if n := pm.Metrics[0]; n.LabelValues[3] != "eth0" || n.LabelValues[0] != "pod1" {
		t.Errorf("network labels %v", n.LabelValues)
	}
}
