package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/crib-dev/crib/cri"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/server/rootless"
	"github.com/crib-dev/crib/storage"
)

// crib's own Prometheus metrics, served on an opt-in listener
// ([metrics] address). The kubelet's per-pod and per-container CRI metrics
// (ListPodSandboxMetrics) are package cri's; these are about crib itself:
// its RPCs, its pods and containers by state, its image pulls and its
// store.

// metricsOwner names the metrics port among the portal's forwards.
const metricsOwner = "metrics"

// storageUsageTTL bounds how often a scrape may walk the store: FsInfo
// reads every file under the storage root.
const storageUsageTTL = time.Minute

type metrics struct {
	reg         *prometheus.Registry
	rpcDuration *prometheus.HistogramVec
	rpcErrors   *prometheus.CounterVec
	pulls       *prometheus.CounterVec
	pullBytes   prometheus.Counter
}

// podLister and containerLister are the parts of the managers the state
// collector reads.
type podLister interface{ List() []*sandbox.Sandbox }
type containerLister interface{ List() []*runtime.Container }
type fsInfoer interface {
	FsInfo(ctx context.Context) (storage.FsInfo, error)
}

func newMetrics(version string, pods podLister, containers containerLister, store fsInfoer) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crib_grpc_request_duration_seconds",
			Help:    "Time crib took to answer a CRI call, by service and method.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"service", "method"}),
		rpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crib_grpc_request_errors_total",
			Help: "CRI calls that failed, by service, method and gRPC status code.",
		}, []string{"service", "method", "code"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crib_image_pulls_total",
			Help: "Image pulls through the CRI, by result (success or failure).",
		}, []string{"result"}),
		pullBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crib_image_pull_bytes_total",
			Help: "Bytes of image blobs downloaded by CRI pulls (blobs already stored are not downloaded and not counted).",
		}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "crib_build_info", Help: "Always 1; the version label is crib's version.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	m.reg.MustRegister(m.rpcDuration, m.rpcErrors, m.pulls, m.pullBytes, info,
		&stateCollector{pods: pods, containers: containers},
		newStorageCollector(store, storageUsageTTL),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// splitMethod turns "/runtime.v1.RuntimeService/Version" into
// "RuntimeService" and "Version".
func splitMethod(full string) (service, method string) {
	dir, method := path.Split(full)
	service = strings.Trim(dir, "/")
	if i := strings.LastIndexByte(service, '.'); i >= 0 {
		service = service[i+1:]
	}
	return service, method
}

// unaryInterceptor times every CRI call and counts the failed ones.
func (m *metrics) unaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		service, method := splitMethod(info.FullMethod)
		m.rpcDuration.WithLabelValues(service, method).Observe(time.Since(start).Seconds())
		if err != nil {
			m.rpcErrors.WithLabelValues(service, method, status.Code(err).String()).Inc()
		}
		return resp, err
	}
}

// meterPulls wraps the image store so that CRI pulls are counted (with
// metrics off, nil m, it is the store itself).
func (m *metrics) meterPulls(images cri.ImageStore) cri.ImageStore {
	if m == nil {
		return images
	}
	return meteredImages{ImageStore: images, m: m}
}

type meteredImages struct {
	cri.ImageStore
	m *metrics
}

// Pull counts the pull and the bytes each blob grew by. Two pulls of the
// same image at once share one transfer in package storage; each watches
// it, so such a transfer is counted twice.
func (s meteredImages) Pull(ctx context.Context, ref string, auth *storage.Auth, progress func(storage.Progress)) (storage.Image, error) {
	var mu sync.Mutex
	seen := map[string]uint64{}
	count := func(p storage.Progress) {
		mu.Lock()
		if p.Offset > seen[p.Digest] {
			s.m.pullBytes.Add(float64(p.Offset - seen[p.Digest]))
			seen[p.Digest] = p.Offset
		}
		mu.Unlock()
		if progress != nil {
			progress(p)
		}
	}
	img, err := s.ImageStore.Pull(ctx, ref, auth, count)
	result := "success"
	if err != nil {
		result = "failure"
	}
	s.m.pulls.WithLabelValues(result).Inc()
	return img, err
}

// stateCollector counts pods and containers by state on every scrape;
// every known state is reported, zero included, so a series never
// vanishes.
type stateCollector struct {
	pods       podLister
	containers containerLister
}

var (
	podsDesc = prometheus.NewDesc("crib_pods", "Pod sandboxes by CRI state.", []string{"state"}, nil)
	ctrsDesc = prometheus.NewDesc("crib_containers", "Containers by state.", []string{"state"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- ctrsDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	pods := map[string]int{string(sandbox.StateReady): 0, string(sandbox.StateNotReady): 0}
	for _, sb := range c.pods.List() {
		pods[string(sb.State)]++
	}
	ctrs := map[string]int{}
	for _, s := range []runtime.State{runtime.StateCreated, runtime.StateRunning, runtime.StateExited, runtime.StateUnknown} {
		ctrs[string(s)] = 0
	}
	for _, ct := range c.containers.List() {
		ctrs[string(ct.State)]++
	}
	for state, n := range pods {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(n), state)
	}
	for state, n := range ctrs {
		ch <- prometheus.MustNewConstMetric(ctrsDesc, prometheus.GaugeValue, float64(n), state)
	}
}

// storageCollector reports the store's use, measured at most once per ttl.
type storageCollector struct {
	store fsInfoer
	ttl   time.Duration
	bytes *prometheus.Desc
	inods *prometheus.Desc

	mu   sync.Mutex // held while measuring, so scrapes never walk twice
	at   time.Time
	last storage.FsInfo
	err  error
}

func newStorageCollector(store fsInfoer, ttl time.Duration) *storageCollector {
	return &storageCollector{
		store: store, ttl: ttl,
		bytes: prometheus.NewDesc("crib_storage_used_bytes", "Bytes used under the storage root, by image layers and by container writable layers (measured at most once a minute).", []string{"fs"}, nil),
		inods: prometheus.NewDesc("crib_storage_used_inodes", "Inodes used under the storage root, by image layers and by container writable layers.", []string{"fs"}, nil),
	}
}

func (c *storageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.inods
}

func (c *storageCollector) Collect(ch chan<- prometheus.Metric) {
	info, err := c.measure()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.bytes, err)
		return
	}
	for _, fs := range []struct {
		name string
		u    storage.FsUsage
	}{{"images", info.Images}, {"containers", info.Containers}} {
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(fs.u.Bytes), fs.name)
		ch <- prometheus.MustNewConstMetric(c.inods, prometheus.GaugeValue, float64(fs.u.Inodes), fs.name)
	}
}

func (c *storageCollector) measure() (storage.FsInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.ttl {
		return c.last, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.last, c.err = c.store.FsInfo(ctx)
	c.at = time.Now()
	return c.last, c.err
}

// serveMetrics serves /metrics on addr when it is set. Rootless, crib
// listens in its own network namespace and asks the parent to bind the
// same address on the host and forward to it, so a scraper on the host
// and one inside crib's namespaces use the same URL. The returned function
// stops both.
func serveMetrics(ctx context.Context, addr string, m *metrics, hs *rootless.HostSide, log *slog.Logger) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %q: %w", addr, err)
	}
	inside := host
	if hs.Ports != nil {
		inside = namespaceBindHost(host)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(inside, port))
	if err != nil {
		return nil, fmt.Errorf("metrics: listening on %s: %w", net.JoinHostPort(inside, port), err)
	}
	if hs.Ports != nil {
		n, _ := strconv.Atoi(port)
		err := hs.Ports.ForwardTCP(ctx, metricsOwner, host, n, net.JoinHostPort(loopbackFor(inside), port))
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("metrics: binding %s on the host: %w", addr, err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "address", addr)
	if !isLoopbackHost(host) {
		// Like containerd's and CRI-O's, the endpoint has no
		// authentication; its series name pods, containers and images.
		log.Warn("metrics are served without authentication to anyone who reaches this address; bind a loopback address or put an authenticating proxy in front", "address", addr)
	}
	return func() {
		srv.Close()
		if hs.Ports != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hs.Ports.Unexpose(ctx, metricsOwner)
		}
	}, nil
}

// namespaceBindHost is the address crib binds inside its own network
// namespace for a host address: an unspecified or loopback address is kept
// (pods may then reach it), any other address belongs to the host's
// interfaces, which crib's namespace lacks, so loopback stands in.
func namespaceBindHost(host string) string {
	ip := net.ParseIP(host)
	if host == "" || (ip != nil && (ip.IsUnspecified() || ip.IsLoopback())) {
		return host
	}
	return "127.0.0.1"
}

// loopbackFor is where the parent's forwards land inside crib's namespace.
func loopbackFor(bound string) string {
	if ip := net.ParseIP(bound); ip != nil && ip.IsLoopback() {
		return bound
	}
	if ip := net.ParseIP(bound); ip != nil && ip.To4() == nil {
		return "::1"
	}
	return "127.0.0.1"
}

// isLoopbackHost reports whether host (a listen address's host part) can
// only be reached from this machine.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
