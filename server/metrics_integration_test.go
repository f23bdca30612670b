//go:build integration

package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A rootless crib with the metrics listener on: CRI calls, a pull, a pod
// and a container, then a scrape from the host's namespaces (through the
// parent's forward) and the kubelet's CRI metrics.
func TestIntegrationMetrics(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	metricsPort := freeHostPort(t)
	d.extra = append(d.extra, "--metrics-address", fmt.Sprintf("127.0.0.1:%d", metricsPort))
	d.startWithRegistry(t)
	c := d.clients(t)
	ctx := context.Background()

	if _, err := c.rs.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "does-not-exist"}); err == nil {
		t.Fatal("status of an unknown container succeeded")
	}
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "127.0.0.1:1/nothing:here"}}); err == nil {
		t.Fatal("pull from a closed port succeeded")
	}
	logDir := filepath.Join(u.home, "it-logs-"+filepath.Base(d.runroot))
	defer os.RemoveAll(logDir)
	pcfg := podConfig("metrics", freeHostPort(t), logDir)
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.out)
	}
	ctr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: webContainer(), SandboxConfig: pcfg})
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, d.out)
	}
	if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v\n%s", err, d.out)
	}
	defer func() {
		c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	}()

	t.Run("scrape from the host", func(t *testing.T) {
		body := httpGetRetry(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
		for _, tc := range []struct {
			series string
			check  func(float64) bool
		}{
			{`crib_grpc_request_duration_seconds_count{method="Version",service="RuntimeService"}`, func(v float64) bool { return v >= 1 }},
			{`crib_grpc_request_errors_total{code="NotFound",method="ContainerStatus",service="RuntimeService"}`, func(v float64) bool { return v == 1 }},
			{`crib_image_pulls_total{result="success"}`, func(v float64) bool { return v == 1 }},
			{`crib_image_pulls_total{result="failure"}`, func(v float64) bool { return v == 1 }},
			{`crib_image_pull_bytes_total`, func(v float64) bool { return v > 100_000 }}, // busybox is ~1 MB compressed
			{`crib_pods{state="Ready"}`, func(v float64) bool { return v == 1 }},
			{`crib_containers{state="running"}`, func(v float64) bool { return v == 1 }},
			{`crib_storage_used_bytes{fs="images"}`, func(v float64) bool { return v > 100_000 }},
		} {
			v, ok := sample(body, tc.series)
			if !ok || !tc.check(v) {
				t.Errorf("%s = %v (present %v)", tc.series, v, ok)
			}
		}
		if t.Failed() {
			t.Logf("scrape:\n%s", body)
		}
	})

	t.Run("kubelet CRI metrics", func(t *testing.T) {
		descs, err := c.rs.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
		if err != nil || len(descs.Descriptors) == 0 {
			t.Fatalf("ListMetricDescriptors: %v %v", descs, err)
		}
		resp, err := c.rs.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.PodMetrics) != 1 || len(resp.PodMetrics[0].ContainerMetrics) != 1 {
			t.Fatalf("pod metrics: %v", resp.PodMetrics)
		}
		values := map[string]uint64{}
		for _, m := range resp.PodMetrics[0].ContainerMetrics[0].Metrics {
			values[m.Name] = m.Value.GetValue()
		}
		if values["container_processes"] < 1 || values["container_memory_working_set_bytes"] == 0 {
			t.Errorf("a running httpd shows %v", values)
		}
		var rx bool
		for _, m := range resp.PodMetrics[0].Metrics {
			if m.Name == "container_network_receive_bytes_total" && m.LabelValues[3] == "eth0" {
				rx = true
			}
		}
		if !rx {
			t.Errorf("no eth0 network metric for the pod: %v", resp.PodMetrics[0].Metrics)
		}
	})
}

// sample finds one series in a Prometheus text exposition.
func sample(body, series string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(m[1]), 64)
	return v, err == nil
}
