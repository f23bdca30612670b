package cri

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/runtime/cgroups"
	"github.com/crib-dev/crib/sandbox"
)

// The managers are stand-ins holding fixed measurements: what is tested
// here is the translation into CRI metrics, not the measuring, which the
// sandbox, runtime and runtime/cgroups packages test against real cgroups
// and /proc and against fixtures. Only the methods the metrics calls use
// are implemented; any other panics.
type metricsPods struct {
	PodManager
	pods     []*sandbox.Sandbox
	counters map[string][]sandbox.InterfaceCounters
}

func (f metricsPods) List() []*sandbox.Sandbox { return f.pods }
func (f metricsPods) NetworkCounters(_ context.Context, id string) ([]sandbox.InterfaceCounters, error) {
	if c, ok := f.counters[id]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("pod %s: %w", id, errdefs.ErrNotFound)
}

type metricsContainers struct {
	ContainerManager
	list    []*runtime.Container
	metrics map[string]runtime.Metrics
}

func (f metricsContainers) List() []*runtime.Container   { return f.list }
func (f metricsContainers) Events() <-chan runtime.Event { return nil }
func (f metricsContainers) Metrics(_ context.Context, id string) (runtime.Metrics, error) {
	if m, ok := f.metrics[id]; ok {
		return m, nil
	}
	return runtime.Metrics{}, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
}

// critestExpected are the descriptors critest v1.37.0 requires
// (pkg/validate/pod.go, less those it lists as unimplemented anywhere).
var critestExpected = []string{
	"container_blkio_device_usage_total", "container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
	"container_cpu_cfs_throttled_seconds_total", "container_cpu_system_seconds_total", "container_cpu_usage_seconds_total",
	"container_cpu_user_seconds_total", "container_file_descriptors", "container_fs_inodes_free", "container_fs_inodes_total",
	"container_fs_limit_bytes", "container_fs_reads_bytes_total", "container_fs_reads_total", "container_fs_usage_bytes",
	"container_fs_writes_bytes_total", "container_fs_writes_total", "container_last_seen", "container_memory_cache",
	"container_memory_failcnt", "container_memory_failures_total", "container_memory_kernel_usage",
	"container_memory_mapped_file", "container_memory_max_usage_bytes", "container_memory_rss", "container_memory_swap",
	"container_memory_usage_bytes", "container_memory_working_set_bytes", "container_network_receive_bytes_total",
	"container_network_receive_errors_total", "container_network_receive_packets_dropped_total",
	"container_network_receive_packets_total", "container_network_transmit_bytes_total",
	"container_network_transmit_errors_total", "container_network_transmit_packets_dropped_total",
	"container_network_transmit_packets_total", "container_oom_events_total", "container_processes", "container_sockets",
	"container_spec_cpu_period", "container_spec_cpu_shares", "container_spec_memory_limit_bytes",
	"container_spec_memory_swap_limit_bytes", "container_start_time_seconds", "container_threads", "container_threads_max",
}

// cgroupMetrics is a container confined by a v1 cgroup that counted
// block I/O on one device.
var cgroupMetrics = runtime.Metrics{
	Usage: runtime.Usage{Stats: cgroups.Stats{CPUUsageNs: 2_700_000_000, MemoryUsage: 300, MemoryWorkingSet: 200, MemoryRSS: 100,
		PageFaults: 7, MajorPageFaults: 1, Pids: 3}, Source: "cgroup"},
	CPUUserNs: 2_000_000_000, CPUSystemNs: 700_000_000, CFSPeriods: 50, CFSThrottledPeriods: 7, CFSThrottledNs: 3_500_000_000,
	MemoryCache: 11, MemoryMappedFile: 12, MemorySwap: 13, MemoryFailcnt: 14, MemoryMaxUsage: 15, MemoryKernel: 16, OOMEvents: 1,
	CPUPeriodUs: 100000, CPUQuotaUs: 20000, CPUShares: 1024, MemoryLimit: 64 << 20, MemorySwapLimit: 9223372036854771712,
	ThreadsMax: runtime.Unlimited, Threads: 4, FileDescriptors: 9, Sockets: 2,
	ProcessIO: runtime.IOCounters{ReadBytes: 1, WriteBytes: 2, Reads: 3, Writes: 4},
	Devices: []runtime.DeviceIO{{Device: "/dev/sda", Major: 8, Minor: 0,
		Bytes: map[string]uint64{"Read": 4096, "Write": 8192, "Total": 12288}, Ops: map[string]uint64{"Read": 1, "Write": 2, "Total": 3}}},
	RootFS:    runtime.FilesystemStats{LimitBytes: 1 << 30, InodesTotal: 1000, InodesFree: 900},
	StartedAt: time.Unix(1700000000, 500), LastSeen: time.Unix(1700000100, 0),
}

func newMetricsService(c1 runtime.Metrics) *RuntimeService {
	podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"}}
	pods := metricsPods{
		pods: []*sandbox.Sandbox{
			{ID: "pod1", Config: podCfg, State: sandbox.StateReady},
			{ID: "gone", Config: podCfg, State: sandbox.StateReady}, // removed while listed
		},
		counters: map[string][]sandbox.InterfaceCounters{"pod1": {{Name: "eth0",
			RxBytes: 1000, RxPackets: 10, RxErrors: 1, RxDropped: 3, TxBytes: 2000, TxPackets: 20, TxErrors: 2, TxDropped: 4}}},
	}
	ctrCfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "nginx"}}
	ctrs := metricsContainers{
		list: []*runtime.Container{
			{ID: "c1", SandboxID: "pod1", Config: ctrCfg, ImageRef: "docker.io/library/nginx:1", State: runtime.StateRunning},
			{ID: "c2", SandboxID: "pod1", Config: ctrCfg, State: runtime.StateExited},
		},
		metrics: map[string]runtime.Metrics{"c1": c1},
	}
	return NewRuntimeService(Options{Pods: pods, Containers: ctrs})
}

func TestListMetricDescriptors(t *testing.T) {
	s := newMetricsService(cgroupMetrics)
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
		if d.Help == "" || len(d.LabelKeys) == 0 {
			t.Errorf("%s has no help or no label keys", d.Name)
		}
		// The kubelet appends these itself; a duplicate label name makes
		// its descriptor invalid.
		for _, k := range []string{"namespace", "pod", "container"} {
			if slices.Contains(d.LabelKeys, k) {
				t.Errorf("%s repeats the kubelet's label %q", d.Name, k)
			}
		}
	}
	for _, name := range critestExpected {
		if !seen[name] {
			t.Errorf("no descriptor for %s", name)
		}
	}
}

// sampleKey names one series: the metric and its label values.
func sampleKey(m *runtimeapi.Metric) string {
	return m.Name + "{" + strings.Join(m.LabelValues, ",") + "}"
}

func TestListPodSandboxMetrics(t *testing.T) {
	const ctr = "c1,docker.io/library/nginx:1,nginx_pod1_0"
	net := map[string]uint64{
		"container_network_receive_bytes_total{pod1,,web_default_u1_0,eth0}":            1000,
		"container_network_receive_packets_total{pod1,,web_default_u1_0,eth0}":          10,
		"container_network_receive_errors_total{pod1,,web_default_u1_0,eth0}":           1,
		"container_network_receive_packets_dropped_total{pod1,,web_default_u1_0,eth0}":  3,
		"container_network_transmit_bytes_total{pod1,,web_default_u1_0,eth0}":           2000,
		"container_network_transmit_packets_total{pod1,,web_default_u1_0,eth0}":         20,
		"container_network_transmit_errors_total{pod1,,web_default_u1_0,eth0}":          2,
		"container_network_transmit_packets_dropped_total{pod1,,web_default_u1_0,eth0}": 4,
	}
	withCgroup := map[string]uint64{
		"container_cpu_usage_seconds_total{" + ctr + "}":         2, // whole seconds
		"container_cpu_user_seconds_total{" + ctr + "}":          2,
		"container_cpu_system_seconds_total{" + ctr + "}":        0,
		"container_cpu_cfs_periods_total{" + ctr + "}":           50,
		"container_cpu_cfs_throttled_periods_total{" + ctr + "}": 7,
		"container_cpu_cfs_throttled_seconds_total{" + ctr + "}": 3,
		"container_memory_usage_bytes{" + ctr + "}":              300,
		"container_memory_working_set_bytes{" + ctr + "}":        200,
		"container_memory_rss{" + ctr + "}":                      100,
		"container_memory_cache{" + ctr + "}":                    11,
		"container_memory_mapped_file{" + ctr + "}":              12,
		"container_memory_swap{" + ctr + "}":                     13,
		"container_memory_failcnt{" + ctr + "}":                  14,
		"container_memory_max_usage_bytes{" + ctr + "}":          15,
		"container_memory_kernel_usage{" + ctr + "}":             16,
		"container_memory_failures_total{" + ctr + "}":           7,
		"container_memory_major_failures_total{" + ctr + "}":     1,
		"container_oom_events_total{" + ctr + "}":                1,
		"container_processes{" + ctr + "}":                       3,
		"container_threads{" + ctr + "}":                         4,
		"container_threads_max{" + ctr + "}":                     0, // unlimited
		"container_file_descriptors{" + ctr + "}":                9,
		"container_sockets{" + ctr + "}":                         2,
		"container_spec_cpu_period{" + ctr + "}":                 100000,
		"container_spec_cpu_quota{" + ctr + "}":                  20000,
		"container_spec_cpu_shares{" + ctr + "}":                 1024,
		"container_spec_memory_limit_bytes{" + ctr + "}":         64 << 20,
		"container_spec_memory_swap_limit_bytes{" + ctr + "}":    0, // v1's "no limit"
		"container_start_time_seconds{" + ctr + "}":              1700000000,
		"container_last_seen{" + ctr + "}":                       1700000100,
		"container_fs_usage_bytes{" + ctr + "}":                  0, // no rootfs store wired
		"container_fs_inodes_used{" + ctr + "}":                  0,
		"container_fs_limit_bytes{" + ctr + "}":                  1 << 30,
		"container_fs_inodes_total{" + ctr + "}":                 1000,
		"container_fs_inodes_free{" + ctr + "}":                  900,
		// Block I/O from the cgroup, per device; process I/O unused.
		"container_fs_reads_bytes_total{" + ctr + ",/dev/sda}":               4096,
		"container_fs_writes_bytes_total{" + ctr + ",/dev/sda}":              8192,
		"container_fs_reads_total{" + ctr + ",/dev/sda}":                     1,
		"container_fs_writes_total{" + ctr + ",/dev/sda}":                    2,
		"container_blkio_device_usage_total{" + ctr + ",/dev/sda,8,0,Read}":  4096,
		"container_blkio_device_usage_total{" + ctr + ",/dev/sda,8,0,Total}": 12288,
		"container_blkio_device_usage_total{" + ctr + ",/dev/sda,8,0,Write}": 8192,
	}
	// Unconfined: no cgroup, so no block devices and no limits; I/O is
	// the processes' own.
	unconfined := cgroupMetrics
	unconfined.Devices = nil
	unconfined.CPUQuotaUs, unconfined.MemoryLimit, unconfined.MemorySwapLimit = runtime.Unlimited, runtime.Unlimited, runtime.Unlimited
	withoutCgroup := map[string]uint64{}
	for k, v := range withCgroup {
		if !strings.Contains(k, "/dev/sda") {
			withoutCgroup[k] = v
		}
	}
	for k, v := range map[string]uint64{
		"container_spec_cpu_quota{" + ctr + "}":          0,
		"container_spec_memory_limit_bytes{" + ctr + "}": 0,
		"container_fs_reads_bytes_total{" + ctr + ",}":   1,
		"container_fs_writes_bytes_total{" + ctr + ",}":  2,
		"container_fs_reads_total{" + ctr + ",}":         3,
		"container_fs_writes_total{" + ctr + ",}":        4,
	} {
		withoutCgroup[k] = v
	}
	for _, tc := range []struct {
		name string
		c1   runtime.Metrics
		want map[string]uint64
	}{
		{"cgroup", cgroupMetrics, withCgroup},
		{"unconfined", unconfined, withoutCgroup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newMetricsService(tc.c1)
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
			for _, m := range append(slices.Clone(pm.Metrics), pm.ContainerMetrics[0].Metrics...) {
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
				if _, dup := got[sampleKey(m)]; dup {
					t.Errorf("series %s twice", sampleKey(m))
				}
				got[sampleKey(m)] = m.Value.GetValue()
			}
			want := map[string]uint64{}
			for k, v := range net {
				want[k] = v
			}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %d (present %v), want %d", k, g, ok, v)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected series %s", k)
				}
			}
		})
	}
}
