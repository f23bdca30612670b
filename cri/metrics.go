package cri

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
)

// The kubelet's CRI metrics (feature PodAndContainerStatsFromCRI): it
// asks once for the descriptors, then on every scrape of its
// /metrics/cadvisor endpoint for the values, which it turns into
// Prometheus series. The names, label keys and units follow cAdvisor's,
// so dashboards written for it keep working. The kubelet appends the
// namespace, pod and container labels itself, so crib's label keys must
// not repeat them.
//
// Every value is a measurement (runtime.Metrics, sandbox.InterfaceCounters
// and the writable layer's usage); a figure the host cannot measure is 0
// there, and a limit nothing enforces is shown as 0, as cAdvisor shows it.
//
// CRI metric values are unsigned integers: times are therefore whole
// seconds, the one place these series are coarser than cAdvisor's.

// Label keys: a container's (or, for the network, a pod's) id, its image
// and crib's unique name for it, then what tells a metric's series apart.
var (
	containerLabelKeys = []string{"id", "image", "name"}
	deviceLabelKeys    = []string{"id", "image", "name", "device"}
	blkioLabelKeys     = []string{"id", "image", "name", "device", "major", "minor", "operation"}
	networkLabelKeys   = []string{"id", "image", "name", "interface"}
)

type metricDef struct {
	name   string
	help   string
	typ    runtimeapi.MetricType
	labels []string
}

// point is one series of a metric: the values of the label keys past the
// container's own, and its value.
type point struct {
	extra []string
	value uint64
}

// containerSample is one measurement of a container; each metric picks
// its series from it.
type containerSample struct {
	m                 runtime.Metrics
	fsBytes, fsInodes uint64
}

type containerMetricDef struct {
	metricDef
	points func(containerSample) []point
}

type podMetricDef struct {
	metricDef
	value func(sandbox.InterfaceCounters) uint64
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

// scalar is a metric with one series per container.
func scalar(name, help string, typ runtimeapi.MetricType, v func(containerSample) uint64) containerMetricDef {
	return containerMetricDef{metricDef{name, help, typ, containerLabelKeys},
		func(s containerSample) []point { return []point{{value: v(s)}} }}
}

// perDevice is a file-system I/O counter with one series per block device.
func perDevice(name, help string, v func(deviceIO) uint64) containerMetricDef {
	return containerMetricDef{metricDef{name, help, counter, deviceLabelKeys}, func(s containerSample) []point {
		var out []point
		for _, d := range s.devices() {
			out = append(out, point{[]string{d.name}, v(d)})
		}
		return out
	}}
}

func netDef(name, help string, v func(sandbox.InterfaceCounters) uint64) podMetricDef {
	return podMetricDef{metricDef{name, help, counter, networkLabelKeys}, v}
}

// deviceIO is one device's file-system I/O as the fs_* series show it.
type deviceIO struct {
	name                  string
	readBytes, writeBytes uint64
	reads, writes         uint64
}

// devices is the cgroup's per-device I/O, or where the cgroup counted
// none (no blkio/io controller, as rootless without delegation) the
// container's processes' own I/O, under device "".
func (s containerSample) devices() []deviceIO {
	if len(s.m.Devices) == 0 {
		io := s.m.ProcessIO
		return []deviceIO{{"", io.ReadBytes, io.WriteBytes, io.Reads, io.Writes}}
	}
	var out []deviceIO
	for _, d := range s.m.Devices {
		out = append(out, deviceIO{d.Device, d.Bytes["Read"], d.Bytes["Write"], d.Ops["Read"], d.Ops["Write"]})
	}
	return out
}

// blkioPoints is the bytes of each operation on each device, as the
// cgroup counted them; no series without a blkio/io controller.
func blkioPoints(s containerSample) []point {
	var out []point
	for _, d := range s.m.Devices {
		maj, min := strconv.FormatUint(d.Major, 10), strconv.FormatUint(d.Minor, 10)
		for _, op := range slices.Sorted(maps.Keys(d.Bytes)) {
			out = append(out, point{[]string{d.Device, maj, min, op}, d.Bytes[op]})
		}
	}
	return out
}

// limit shows a limit as cAdvisor does: anything above 2^62 (the
// kernel's page-rounded "no limit" on v1, runtime.Unlimited on v2) is 0.
func limit(v uint64) uint64 {
	if v > 1<<62 {
		return 0
	}
	return v
}

func seconds(ns uint64) uint64 { return ns / 1e9 }

// containerMetricDefs are measured per container, podMetricDefs per pod
// (the network is the pod's: its containers share it).
var (
	containerMetricDefs = []containerMetricDef{
		scalar("container_cpu_usage_seconds_total", "Cumulative CPU time consumed, in whole seconds.", counter,
			func(s containerSample) uint64 { return seconds(s.m.CPUUsageNs) }),
		scalar("container_cpu_user_seconds_total", "Cumulative user CPU time consumed, in whole seconds.", counter,
			func(s containerSample) uint64 { return seconds(s.m.CPUUserNs) }),
		scalar("container_cpu_system_seconds_total", "Cumulative system CPU time consumed, in whole seconds.", counter,
			func(s containerSample) uint64 { return seconds(s.m.CPUSystemNs) }),
		scalar("container_cpu_cfs_periods_total", "Number of elapsed CFS enforcement periods.", counter,
			func(s containerSample) uint64 { return s.m.CFSPeriods }),
		scalar("container_cpu_cfs_throttled_periods_total", "Number of CFS periods in which the container was throttled.", counter,
			func(s containerSample) uint64 { return s.m.CFSThrottledPeriods }),
		scalar("container_cpu_cfs_throttled_seconds_total", "Total time the container was throttled, in whole seconds.", counter,
			func(s containerSample) uint64 { return seconds(s.m.CFSThrottledNs) }),
		scalar("container_memory_usage_bytes", "Current memory usage, including page cache, in bytes.", gauge,
			func(s containerSample) uint64 { return s.m.MemoryUsage }),
		scalar("container_memory_working_set_bytes", "Current working set, in bytes.", gauge,
			func(s containerSample) uint64 { return s.m.MemoryWorkingSet }),
		scalar("container_memory_rss", "Size of RSS, in bytes.", gauge,
			func(s containerSample) uint64 { return s.m.MemoryRSS }),
		scalar("container_memory_cache", "Page cache memory, in bytes.", gauge,
			func(s containerSample) uint64 { return s.m.MemoryCache }),
		scalar("container_memory_mapped_file", "Size of memory-mapped files, in bytes.", gauge,
			func(s containerSample) uint64 { return s.m.MemoryMappedFile }),
		scalar("container_memory_swap", "Swap usage, in bytes.", gauge,
			func(s containerSample) uint64 { return s.m.MemorySwap }),
		scalar("container_memory_kernel_usage", "Kernel memory charged to the container, in bytes.", gauge,
			func(s containerSample) uint64 { return s.m.MemoryKernel }),
		scalar("container_memory_max_usage_bytes", "Maximum memory usage recorded, in bytes.", gauge,
			func(s containerSample) uint64 { return s.m.MemoryMaxUsage }),
		scalar("container_memory_failcnt", "Number of times memory usage hit its limit.", counter,
			func(s containerSample) uint64 { return s.m.MemoryFailcnt }),
		scalar("container_memory_failures_total", "Cumulative count of page faults.", counter,
			func(s containerSample) uint64 { return s.m.PageFaults }),
		scalar("container_memory_major_failures_total", "Cumulative count of major page faults.", counter,
			func(s containerSample) uint64 { return s.m.MajorPageFaults }),
		scalar("container_oom_events_total", "Count of out-of-memory kills in the container.", counter,
			func(s containerSample) uint64 { return s.m.OOMEvents }),
		scalar("container_processes", "Number of processes running inside the container.", gauge,
			func(s containerSample) uint64 { return s.m.Pids }),
		scalar("container_threads", "Number of threads running inside the container.", gauge,
			func(s containerSample) uint64 { return s.m.Threads }),
		scalar("container_threads_max", "Maximum number of tasks the container may have; 0 is no limit.", gauge,
			func(s containerSample) uint64 { return limit(s.m.ThreadsMax) }),
		scalar("container_file_descriptors", "Number of open file descriptors of the container's processes.", gauge,
			func(s containerSample) uint64 { return s.m.FileDescriptors }),
		scalar("container_sockets", "Number of open sockets of the container's processes.", gauge,
			func(s containerSample) uint64 { return s.m.Sockets }),
		scalar("container_spec_cpu_period", "CPU CFS period of the container, in microseconds.", gauge,
			func(s containerSample) uint64 { return s.m.CPUPeriodUs }),
		scalar("container_spec_cpu_quota", "CPU CFS quota of the container, in microseconds; 0 is no quota.", gauge,
			func(s containerSample) uint64 { return limit(s.m.CPUQuotaUs) }),
		scalar("container_spec_cpu_shares", "CPU shares of the container.", gauge,
			func(s containerSample) uint64 { return s.m.CPUShares }),
		scalar("container_spec_memory_limit_bytes", "Memory limit of the container, in bytes; 0 is no limit.", gauge,
			func(s containerSample) uint64 { return limit(s.m.MemoryLimit) }),
		scalar("container_spec_memory_swap_limit_bytes", "Memory plus swap limit (cgroup v1) or swap limit (cgroup v2) of the container, in bytes; 0 is no limit.", gauge,
			func(s containerSample) uint64 { return limit(s.m.MemorySwapLimit) }),
		scalar("container_start_time_seconds", "Start time of the container since the Unix epoch, in seconds.", gauge,
			func(s containerSample) uint64 { return unixSeconds(s.m.StartedAt.Unix()) }),
		scalar("container_last_seen", "Last time the container was seen by crib, in seconds since the Unix epoch.", gauge,
			func(s containerSample) uint64 { return unixSeconds(s.m.LastSeen.Unix()) }),
		scalar("container_fs_usage_bytes", "Bytes used by the container's writable layer.", gauge,
			func(s containerSample) uint64 { return s.fsBytes }),
		scalar("container_fs_inodes_used", "Inodes used by the container's writable layer.", gauge,
			func(s containerSample) uint64 { return s.fsInodes }),
		scalar("container_fs_limit_bytes", "Size of the file system holding the container's writable layer, in bytes.", gauge,
			func(s containerSample) uint64 { return s.m.RootFS.LimitBytes }),
		scalar("container_fs_inodes_total", "Inodes of the file system holding the container's writable layer.", gauge,
			func(s containerSample) uint64 { return s.m.RootFS.InodesTotal }),
		scalar("container_fs_inodes_free", "Free inodes of the file system holding the container's writable layer.", gauge,
			func(s containerSample) uint64 { return s.m.RootFS.InodesFree }),
		perDevice("container_fs_reads_bytes_total", "Cumulative count of bytes read.",
			func(d deviceIO) uint64 { return d.readBytes }),
		perDevice("container_fs_writes_bytes_total", "Cumulative count of bytes written.",
			func(d deviceIO) uint64 { return d.writeBytes }),
		perDevice("container_fs_reads_total", "Cumulative count of reads completed.",
			func(d deviceIO) uint64 { return d.reads }),
		perDevice("container_fs_writes_total", "Cumulative count of writes completed.",
			func(d deviceIO) uint64 { return d.writes }),
		{metricDef{"container_blkio_device_usage_total", "Blkio device bytes usage, by operation.", counter, blkioLabelKeys}, blkioPoints},
	}
	podMetricDefs = []podMetricDef{
		netDef("container_network_receive_bytes_total", "Cumulative count of bytes received.",
			func(i sandbox.InterfaceCounters) uint64 { return i.RxBytes }),
		netDef("container_network_receive_packets_total", "Cumulative count of packets received.",
			func(i sandbox.InterfaceCounters) uint64 { return i.RxPackets }),
		netDef("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.",
			func(i sandbox.InterfaceCounters) uint64 { return i.RxDropped }),
		netDef("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.",
			func(i sandbox.InterfaceCounters) uint64 { return i.RxErrors }),
		netDef("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.",
			func(i sandbox.InterfaceCounters) uint64 { return i.TxBytes }),
		netDef("container_network_transmit_packets_total", "Cumulative count of packets transmitted.",
			func(i sandbox.InterfaceCounters) uint64 { return i.TxPackets }),
		netDef("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.",
			func(i sandbox.InterfaceCounters) uint64 { return i.TxDropped }),
		netDef("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.",
			func(i sandbox.InterfaceCounters) uint64 { return i.TxErrors }),
	}
)

// unixSeconds clamps a time before the epoch (a zero time: never
// started) to 0.
func unixSeconds(s int64) uint64 { return uint64(max(s, 0)) }

// ListMetricDescriptors describes every metric ListPodSandboxMetrics
// returns.
func (s *RuntimeService) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	resp := &runtimeapi.ListMetricDescriptorsResponse{}
	var defs []metricDef
	for _, d := range containerMetricDefs {
		defs = append(defs, d.metricDef)
	}
	for _, d := range podMetricDefs {
		defs = append(defs, d.metricDef)
	}
	for _, d := range defs {
		resp.Descriptors = append(resp.Descriptors, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labels})
	}
	return resp, nil
}

// ListPodSandboxMetrics measures every pod and its running containers. A
// pod or container that goes away while being measured is left out; any
// other failure fails the call, so the kubelet never takes a gap for a
// zero.
func (s *RuntimeService) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	for _, sb := range s.pods.List() {
		pm, err := s.podSandboxMetrics(ctx, sb.ID, podName(sb.Config.GetMetadata()))
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		resp.PodMetrics = append(resp.PodMetrics, pm)
	}
	return resp, nil
}

func (s *RuntimeService) podSandboxMetrics(ctx context.Context, podID, name string) (*runtimeapi.PodSandboxMetrics, error) {
	ifaces, err := s.pods.NetworkCounters(ctx, podID)
	if err != nil {
		return nil, err
	}
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: podID, Metrics: networkMetrics(podID, name, ifaces)}
	for _, c := range s.podContainers(podID) {
		if c.State != runtime.StateRunning {
			continue
		}
		cm, err := s.containerMetrics(ctx, c)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pm.ContainerMetrics = append(pm.ContainerMetrics, cm)
	}
	return pm, nil
}

func (s *RuntimeService) containerMetrics(ctx context.Context, c *runtime.Container) (*runtimeapi.ContainerMetrics, error) {
	m, err := s.containers.Metrics(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	sample := containerSample{m: m}
	if s.rootfs != nil {
		// A container whose layer cannot be measured still has the rest.
		sample.fsBytes, sample.fsInodes, _ = s.rootfs.ContainerUsage(ctx, c.ID)
	}
	labels := []string{c.ID, c.ImageRef, containerName(c.SandboxID, c.Config.GetMetadata())}
	cm := &runtimeapi.ContainerMetrics{ContainerId: c.ID}
	for _, d := range containerMetricDefs {
		for _, p := range d.points(sample) {
			cm.Metrics = append(cm.Metrics, metric(d.metricDef, append(slices.Clip(labels), p.extra...), p.value))
		}
	}
	return cm, nil
}

func networkMetrics(podID, name string, ifaces []sandbox.InterfaceCounters) []*runtimeapi.Metric {
	var out []*runtimeapi.Metric
	for _, i := range ifaces {
		labels := []string{podID, "", name, i.Name}
		for _, d := range podMetricDefs {
			out = append(out, metric(d.metricDef, labels, d.value(i)))
		}
	}
	return out
}

// metric builds one sample; the timestamp stays 0, which tells the
// kubelet the value was measured now, on its request.
func metric(d metricDef, labels []string, v uint64) *runtimeapi.Metric {
	return &runtimeapi.Metric{
		Name:        d.name,
		MetricType:  d.typ,
		LabelValues: labels,
		Value:       &runtimeapi.UInt64Value{Value: v},
	}
}
