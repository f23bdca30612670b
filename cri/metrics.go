package cri

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime"
)

// The kubelet's CRI metrics (feature PodAndContainerStatsFromCRI): it
// asks once for the descriptors, then on every scrape of its
// /metrics/cadvisor endpoint for the values, which it turns into
// Prometheus series. The names follow cAdvisor's, so dashboards written
// for it keep working. The kubelet appends the namespace, pod and
// container labels itself, so crib's label keys must not repeat them.
//
// CRI metric values are unsigned integers: CPU time is therefore whole
// seconds, the one place these series are coarser than cAdvisor's.

// Label keys of the two kinds of series: a container's (or, for the
// network, a pod's) id, its image and crib's unique name for it.
var (
	containerLabelKeys = []string{"id", "image", "name"}
	networkLabelKeys   = []string{"id", "image", "name", "interface"}
)

type metricDef struct {
	name   string
	help   string
	typ    runtimeapi.MetricType
	labels []string
}

// containerSample is one measurement of a container, and ifaceSample of
// one of a pod's network interfaces; each metric picks its value from one.
type containerSample struct {
	u                 runtime.Usage
	fsBytes, fsInodes uint64
}

type ifaceSample = *runtimeapi.NetworkInterfaceUsage

type containerMetricDef struct {
	metricDef
	value func(containerSample) uint64
}

type podMetricDef struct {
	metricDef
	value func(ifaceSample) uint64
}

func ctrDef(name, help string, typ runtimeapi.MetricType, v func(containerSample) uint64) containerMetricDef {
	return containerMetricDef{metricDef{name, help, typ, containerLabelKeys}, v}
}

func netDef(name, help string, v func(ifaceSample) uint64) podMetricDef {
	return podMetricDef{metricDef{name, help, runtimeapi.MetricType_COUNTER, networkLabelKeys}, v}
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

// containerMetricDefs are measured per container, podMetricDefs per pod
// (the network is the pod's: its containers share it).
var (
	containerMetricDefs = []containerMetricDef{
		ctrDef("container_cpu_usage_seconds_total", "Cumulative CPU time consumed, in whole seconds.", counter,
			func(s containerSample) uint64 { return s.u.CPUUsageNs / 1e9 }),
		ctrDef("container_memory_usage_bytes", "Current memory usage, including page cache, in bytes.", gauge,
			func(s containerSample) uint64 { return s.u.MemoryUsage }),
		ctrDef("container_memory_working_set_bytes", "Current working set, in bytes.", gauge,
			func(s containerSample) uint64 { return s.u.MemoryWorkingSet }),
		ctrDef("container_memory_rss", "Size of RSS, in bytes.", gauge,
			func(s containerSample) uint64 { return s.u.MemoryRSS }),
		ctrDef("container_memory_failures_total", "Cumulative count of page faults.", counter,
			func(s containerSample) uint64 { return s.u.PageFaults }),
		ctrDef("container_memory_major_failures_total", "Cumulative count of major page faults.", counter,
			func(s containerSample) uint64 { return s.u.MajorPageFaults }),
		ctrDef("container_processes", "Number of processes running inside the container.", gauge,
			func(s containerSample) uint64 { return s.u.Pids }),
		ctrDef("container_fs_usage_bytes", "Bytes used by the container's writable layer.", gauge,
			func(s containerSample) uint64 { return s.fsBytes }),
		ctrDef("container_fs_inodes_used", "Inodes used by the container's writable layer.", gauge,
			func(s containerSample) uint64 { return s.fsInodes }),
	}
	podMetricDefs = []podMetricDef{
		netDef("container_network_receive_bytes_total", "Cumulative count of bytes received.",
			func(i ifaceSample) uint64 { return i.GetRxBytes().GetValue() }),
		netDef("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.",
			func(i ifaceSample) uint64 { return i.GetRxErrors().GetValue() }),
		netDef("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.",
			func(i ifaceSample) uint64 { return i.GetTxBytes().GetValue() }),
		netDef("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.",
			func(i ifaceSample) uint64 { return i.GetTxErrors().GetValue() }),
	}
)

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
			return nil, toStatus(err)
		}
		resp.PodMetrics = append(resp.PodMetrics, pm)
	}
	return resp, nil
}

func (s *RuntimeService) podSandboxMetrics(ctx context.Context, podID, name string) (*runtimeapi.PodSandboxMetrics, error) {
	st, err := s.pods.Stats(ctx, podID)
	if err != nil {
		return nil, err
	}
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: podID, Metrics: networkMetrics(podID, name, st.GetLinux().GetNetwork())}
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

// containerMetrics samples through Usage, not Stats: Stats would move the
// window of the CPU rate the kubelet's stats calls measure.
func (s *RuntimeService) containerMetrics(ctx context.Context, c *runtime.Container) (*runtimeapi.ContainerMetrics, error) {
	u, err := s.containers.Usage(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	sample := containerSample{u: u}
	if s.rootfs != nil {
		// A container whose layer cannot be measured still has the rest.
		sample.fsBytes, sample.fsInodes, _ = s.rootfs.ContainerUsage(ctx, c.ID)
	}
	labels := []string{c.ID, c.ImageRef, containerName(c.SandboxID, c.Config.GetMetadata())}
	cm := &runtimeapi.ContainerMetrics{ContainerId: c.ID}
	for _, d := range containerMetricDefs {
		cm.Metrics = append(cm.Metrics, metric(d.metricDef, labels, d.value(sample)))
	}
	return cm, nil
}

func networkMetrics(podID, name string, n *runtimeapi.NetworkUsage) []*runtimeapi.Metric {
	var out []*runtimeapi.Metric
	for _, i := range n.GetInterfaces() {
		labels := []string{podID, "", name, i.GetName()}
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
