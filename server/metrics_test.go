package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crib-dev/crib/cri"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/storage"
)

// Fixed listers and stores stand in for the managers: the metrics only
// count what those return.
type fixedPods []*sandbox.Sandbox

func (f fixedPods) List() []*sandbox.Sandbox { return f }

type fixedContainers []*runtime.Container

func (f fixedContainers) List() []*runtime.Container { return f }

type countingFs struct {
	calls int
	info  storage.FsInfo
}

func (c *countingFs) FsInfo(context.Context) (storage.FsInfo, error) {
	c.calls++
	return c.info, nil
}

// pullingStore reports two blobs' progress the way package storage does:
// growing offsets, then done with the full size.
type pullingStore struct {
	cri.ImageStore
	fail bool
}

func (s pullingStore) Pull(_ context.Context, ref string, _ *storage.Auth, progress func(storage.Progress)) (storage.Image, error) {
	for _, p := range []storage.Progress{
		{Digest: "a", Event: storage.ProgressRead, Offset: 100},
		{Digest: "a", Event: storage.ProgressRead, Offset: 250},
		{Digest: "b", Event: storage.ProgressSkipped},
		{Digest: "a", Event: storage.ProgressDone, Offset: 300},
	} {
		progress(p)
	}
	if s.fail {
		return storage.Image{}, errors.New("registry said no")
	}
	return storage.Image{ID: "img"}, nil
}

func TestMetricsExposition(t *testing.T) {
	fs := &countingFs{info: storage.FsInfo{
		Images:     storage.FsUsage{Bytes: 5000, Inodes: 50},
		Containers: storage.FsUsage{Bytes: 700, Inodes: 7},
	}}
	m := newMetrics("1.2.3",
		fixedPods{{ID: "p1", State: sandbox.StateReady}, {ID: "p2", State: sandbox.StateNotReady}, {ID: "p3", State: sandbox.StateReady}},
		fixedContainers{{ID: "c1", State: runtime.StateRunning}, {ID: "c2", State: runtime.StateExited}},
		fs)

	ic := m.unaryInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/Version"}
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	bad := func(context.Context, any) (any, error) { return nil, status.Error(codes.NotFound, "no") }
	ic(context.Background(), nil, info, ok)
	ic(context.Background(), nil, info, ok)
	ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.ImageService/ImageStatus"}, bad)

	images := m.meterPulls(pullingStore{})
	images.Pull(context.Background(), "busybox", nil, nil)
	m.meterPulls(pullingStore{fail: true}).Pull(context.Background(), "nope", nil, nil)

	want := `
# HELP crib_containers Containers by state.
# TYPE crib_containers gauge
crib_containers{state="created"} 0
crib_containers{state="exited"} 1
crib_containers{state="running"} 1
crib_containers{state="unknown"} 0
# HELP crib_grpc_request_errors_total CRI calls that failed, by service, method and gRPC status code.
# TYPE crib_grpc_request_errors_total counter
crib_grpc_request_errors_total{code="NotFound",method="ImageStatus",service="ImageService"} 1
# HELP crib_image_pull_bytes_total Bytes of image blobs downloaded by CRI pulls (blobs already stored are not downloaded and not counted).
# TYPE crib_image_pull_bytes_total counter
crib_image_pull_bytes_total 600
# HELP crib_image_pulls_total Image pulls through the CRI, by result (success or failure).
# TYPE crib_image_pulls_total counter
crib_image_pulls_total{result="failure"} 1
crib_image_pulls_total{result="success"} 1
# HELP crib_pods Pod sandboxes by CRI state.
# TYPE crib_pods gauge
crib_pods{state="NotReady"} 1
crib_pods{state="Ready"} 2
# HELP crib_storage_used_bytes Bytes used under the storage root, by image layers and by container writable layers (measured at most once a minute).
# TYPE crib_storage_used_bytes gauge
crib_storage_used_bytes{fs="containers"} 700
crib_storage_used_bytes{fs="images"} 5000
`
	names := []string{"crib_containers", "crib_grpc_request_errors_total", "crib_image_pull_bytes_total", "crib_image_pulls_total", "crib_pods", "crib_storage_used_bytes"}
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.rpcDuration); n != 2 {
		t.Fatalf("%d latency series, want 2 (Version, ImageStatus)", n)
	}
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "crib_grpc_request_duration_seconds" {
			continue
		}
		for _, s := range f.Metric {
			if s.Label[0].GetValue() == "Version" && s.Histogram.GetSampleCount() != 2 {
				t.Errorf("Version observed %d times, want 2", s.Histogram.GetSampleCount())
			}
		}
	}
	// The second scrape within the TTL does not walk the store again.
	testutil.GatherAndCount(m.reg, "crib_storage_used_bytes")
	if fs.calls != 1 {
		t.Fatalf("store measured %d times, want once per %v", fs.calls, storageUsageTTL)
	}
}

func TestStorageCollectorRemeasuresAfterTTL(t *testing.T) {
	fs := &countingFs{}
	c := newStorageCollector(fs, time.Nanosecond)
	c.measure()
	time.Sleep(time.Millisecond)
	c.measure()
	if fs.calls != 2 {
		t.Fatalf("measured %d times, want 2", fs.calls)
	}
}

func TestSplitMethod(t *testing.T) {
	for full, want := range map[string][2]string{
		"/runtime.v1.RuntimeService/Version": {"RuntimeService", "Version"},
		"/runtime.v1.ImageService/PullImage": {"ImageService", "PullImage"},
		"/grpc.health.v1.Health/Check":       {"Health", "Check"},
	} {
		s, m := splitMethod(full)
		if s != want[0] || m != want[1] {
			t.Errorf("splitMethod(%q) = %q, %q", full, s, m)
		}
	}
}

func TestNamespaceBindHost(t *testing.T) {
	for host, want := range map[string][2]string{
		"":            {"", "127.0.0.1"},
		"0.0.0.0":     {"0.0.0.0", "127.0.0.1"},
		"127.0.0.1":   {"127.0.0.1", "127.0.0.1"},
		"::1":         {"::1", "::1"},
		"::":          {"::", "::1"},
		"192.168.1.5": {"127.0.0.1", "127.0.0.1"},
	} {
		inside := namespaceBindHost(host)
		if inside != want[0] || loopbackFor(inside) != want[1] {
			t.Errorf("%q: binds %q, forwards to %q; want %v", host, inside, loopbackFor(inside), want)
		}
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "::1": true, "localhost": true, "127.0.0.53": true,
		"0.0.0.0": false, "": false, "::": false, "10.0.0.1": false, "node.example": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
