package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/crib-dev/crib/cri"
	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/memtrim"
	"github.com/crib-dev/crib/internal/steptrace"
	"github.com/crib-dev/crib/nri"
	"github.com/crib-dev/crib/server/doctor"
	"github.com/crib-dev/crib/server/rootless"
	"github.com/crib-dev/crib/server/streaming"
	"github.com/crib-dev/crib/storage"
)

// daemonEnv is what differs between the rootful daemon and the rootless
// child.
type daemonEnv struct {
	// idleMarker is written at stop when no pod or container is left, so
	// that the parent may stop the namespace holder.
	idleMarker string
	rootless   bool
	relaySock  string // host dialer socket; empty when already in the host netns
	ready      func()
	// hostPortStart is the host's net.ipv4.ip_unprivileged_port_start.
	hostPortStart int
	// stopping, when set, tells systemd crib is stopping (rootful; the
	// rootless parent tells it itself). activated is the CRI socket systemd
	// passed, nil without socket activation (systemd.go).
	stopping  func()
	activated *os.File
}

// drainTimeout bounds how long in-flight RPCs may run after a stop signal.
const drainTimeout = 10 * time.Second

// runDaemon serves CRI until a signal or ctx ends it, each step undone
// in reverse order on the way out.
func runDaemon(ctx context.Context, o Options, env daemonEnv) error {
	cfg, log := o.Config, o.Logger
	report, err := loadHostReport(cfg.RunRoot)
	if err != nil {
		return err
	}
	l, closeCRI, err := openCRIListener(cfg.Listen, env.activated, log)
	if err != nil {
		return err
	}
	defer closeCRI()
	hostSide, err := startHostSide(ctx, cfg.RunRoot, env, log)
	if err != nil {
		return err
	}
	defer hostSide.Close()
	store, err := openStore(cfg, hostSide.PullProxy, log)
	if err != nil {
		return err
	}
	defer store.Close()
	stopReload := reloadOnHangup(ctx, store, cfg.RunRoot, log)
	defer stopReload()

	parts, err := startParts(ctx, o, report, env, hostSide, store)
	if err != nil {
		return err
	}
	defer parts.close()
	// crictl info's checks say what the daemon uses, as crib doctor does.
	report = doctor.WithCgroupUse(report, parts.cgroupUse)

	// Streaming: exec, attach and port-forward sessions (package
	// streaming, on the runtime through streams.go).
	stream, err := streaming.Start(ctx, cfg.Streaming, streamingHostPorts(hostSide), streamRuntime{containers: parts.containers, pods: parts.pods}, log)
	if err != nil {
		return err
	}
	defer stream.Close()

	// Metrics: per-RPC latency and errors, pulls, states, storage
	// (metrics.go); nil, and nothing built or timed, when they are off.
	var met *metrics
	if cfg.Metrics.Address != "" {
		met = newMetrics(o.Version, parts.pods, parts.containers, store)
	}
	nriHost, err := newNRI(o, env.rootless, log) // server/nri.go
	if err != nil {
		return err
	}
	// Idle after start-up and after each burst of CRI calls, the daemon
	// gives back the memory they used (package memtrim).
	idler := memtrim.NewIdler(log)
	defer idler.Stop()
	srv := newGRPCServer(o, report, env, parts, store, stream, met, nriHost, idler)
	if err := nriHost.Start(); err != nil {
		return err
	}
	defer nriHost.Stop()
	stopMetrics, err := serveMetrics(ctx, cfg.Metrics.Address, met, hostSide, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	return serveUntilStopped(ctx, srv, l, o, env, parts, idler.End)
}

// startHostSide is the daemon's end of the rootless parent's host bridge;
// rootful, the zero HostSide.
func startHostSide(ctx context.Context, runRoot string, env daemonEnv, log *slog.Logger) (*rootless.HostSide, error) {
	if !env.rootless {
		return &rootless.HostSide{}, nil
	}
	return rootless.StartHostSide(ctx, runRoot, env.relaySock, log)
}

// StoreOptions are the image store's options from crib's configuration,
// for the daemon and for crib image (its guest).
func StoreOptions(cfg config.Config, log *slog.Logger) storage.Options {
	return storage.Options{
		Root:           cfg.Root,
		RunRoot:        cfg.RunRoot,
		Driver:         cfg.Storage.Driver,
		StorageConf:    cfg.Storage.StorageConf,
		RegistriesConf: cfg.Image.RegistriesConf,
		PolicyPath:     cfg.Image.PolicyPath,
		Logger:         log,
	}
}

// openStore opens crib's image store, pulling through pullProxy when it
// is set.
func openStore(cfg config.Config, pullProxy string, log *slog.Logger) (*storage.Store, error) {
	var proxy func(*url.URL) (*url.URL, error)
	if pullProxy != "" {
		u, err := url.Parse(pullProxy)
		if err != nil {
			return nil, err
		}
		proxy = func(*url.URL) (*url.URL, error) { return u, nil }
	}
	opts := StoreOptions(cfg, log)
	opts.Proxy = proxy
	store, err := storage.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("opening image storage: %w", err)
	}
	log.Info("image storage", "driver", store.Driver().Name, "reason", store.Driver().Reason)
	return store, nil
}

// newGRPCServer is the CRI server on crib's parts.
func newGRPCServer(o Options, report doctor.Report, env daemonEnv, parts *parts, store *storage.Store, stream *streaming.Service, met *metrics, nriHost *nri.Host, idler *memtrim.Idler) *grpc.Server {
	log := o.Logger
	// cri's error interceptors go last, innermost, so the log and the
	// metrics see the codes clients see.
	unary := []grpc.UnaryServerInterceptor{idleUnary(idler), logUnary(log)}
	if met != nil {
		unary = append(unary, met.unaryInterceptor())
	}
	grpcOpts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...)}
	srv := grpc.NewServer(append(grpcOpts, cri.ServerOptions()...)...)
	rs := cri.NewRuntimeService(cri.Options{
		Version:    o.Version,
		Host:       withImageConfig(hostForCRI(o, report, env, parts), store),
		Pods:       parts.pods,
		Containers: parts.containers,
		Rootfs:     store,
		Spec:       parts.spec,
		Streaming:  stream.URLs(),
		NRI:        nriHost,
		Log:        log,
	})
	// Closers run last first: removed containers' reclaims drain before the
	// managers and the store close.
	parts.closers = append(parts.closers, rs.Close)
	cri.Register(srv, rs, cri.NewImageService(met.meterPulls(store)))
	return srv
}

// serveUntilStopped serves on l until SIGTERM, SIGINT or ctx, then drains
// and, with no pod or container left, marks crib idle for the parent.
func serveUntilStopped(ctx context.Context, srv *grpc.Server, l net.Listener, o Options, env daemonEnv, parts *parts, startedUp func()) error {
	log := o.Logger
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	env.ready()
	startedUp()
	log.Info("crib is serving", "socket", o.Config.Listen, "rootless", env.rootless, "pid", os.Getpid())

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case err := <-served:
		return fmt.Errorf("gRPC server stopped: %w", err)
	case s := <-sigs:
		log.Info("stopping", "signal", s.String())
	case <-ctx.Done():
	}
	if env.stopping != nil {
		env.stopping()
	}
	stopGracefully(srv)
	if env.idleMarker != "" && len(parts.pods.List()) == 0 && len(parts.containers.List()) == 0 {
		os.WriteFile(env.idleMarker, nil, 0o600)
	}
	return nil
}

func stopGracefully(srv *grpc.Server) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		srv.Stop()
	}
}

// listenCRI opens the CRI socket with mode 0600. A socket file left by a
// crashed crib is replaced, once a killed crib still exiting has let go
// of it (socket_exiting.go); one that answers for a live process
// (another crib with other roots, say) is left alone.
func listenCRI(path string, log *slog.Logger) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil && !answeredByExiting(path, c, log) {
		return nil, fmt.Errorf("%w: socket %s answers: another process serves it", ErrAlreadyRunning, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("removing stale socket", "path", path, "err", err)
	}
	return rootless.ListenPrivate(path)
}

// idleUnary counts each CRI call as work for idler.
func idleUnary(idler *memtrim.Idler) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		idler.Begin()
		defer idler.End()
		return handler(ctx, req)
	}
}

func logUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		// The trace's steps are marked by cri and the packages below it;
		// at debug level they join the call's log line (bench/cribbench
		// steps reads them back).
		ctx, trace := steptrace.Start(ctx)
		resp, err := handler(ctx, req)
		level := slog.LevelDebug
		if err != nil {
			level = slog.LevelInfo
		}
		if !log.Enabled(ctx, level) {
			return resp, err
		}
		attrs := []slog.Attr{slog.String("method", info.FullMethod), slog.String("code", status.Code(err).String()),
			slog.Duration("duration", time.Since(start)), slog.Any("err", err)}
		log.LogAttrs(ctx, level, "rpc", append(attrs, trace.LogAttrs()...)...)
		return resp, err
	}
}

func hostForCRI(o Options, r doctor.Report, env daemonEnv, p *parts) cri.Host {
	f := r.Features
	// The kubelet's driver must match crib's, and crib writes cgroupfs
	// only (under systemd too, in the subtree systemd delegates); cgroupfs
	// also when pods run unconfined, as the kubelet needs a driver.
	driver := "cgroupfs"
	handlers := usableHandlers(f)
	userns, usernsWhy, usernsPods := usernsRoom()
	if err := tellKubeletRange(usernsPods); err != nil {
		o.Logger.Warn("giving a kubelet in crib's namespaces its user-namespace range (/etc/subuid of crib's copy of /etc)", "err", err)
	}
	configInfo := usernsStateInfo(o.Config, usernsRootDir(o.Config.RunRoot), userns, o.Logger)
	return cri.Host{
		UserNamespaces:   userns,
		RuntimeCondition: func() cri.Condition { return runtimeCondition(r) },
		NetworkCondition: func() cri.Condition {
			if ok, why := p.pods.NetworkReady(); !ok {
				return cri.Condition{Reason: "NetworkPluginNotReady", Message: why}
			}
			return cri.Condition{Ready: true}
		},
		ResourceCondition: func() cri.Condition {
			if !p.cgroupUse.Confined {
				return cri.Condition{Reason: "NoDelegatedCgroup", Message: "pods run unconfined: " + p.cgroupUse.Reason + " (run `crib doctor`)"}
			}
			return cri.Condition{Ready: true}
		},
		CgroupDriver: driver,
		Handlers:     handlers,
		Info: func() map[string]string {
			return map[string]string{
				"config":         configInfo,
				"cgroups":        mustJSON(p.cgroupUse),
				"storage":        mustJSON(p.storageDriver),
				"host":           mustJSON(f),
				"checks":         mustJSON(map[string]any{"checks": r.Checks}),
				"rootless":       strconv.FormatBool(env.rootless),
				"namespaces":     mustJSON(namespaceNote(env.rootless)),
				"userNamespaces": mustJSON(map[string]any{"supported": userns, "why": usernsWhy}),
				"runtime":        mustJSON(runtimeNote(f, handlers)),
			}
		},
	}
}

func runtimeCondition(r doctor.Report) cri.Condition {
	if len(usableHandlers(r.Features)) == 0 {
		return cri.Condition{Reason: "NoOCIRuntime", Message: "neither runc nor crun is usable on this host (run `crib doctor`)"}
	}
	if r.Features.Conmon == "" {
		return cri.Condition{Reason: "NoMonitor", Message: "conmon is missing (run `crib doctor`)"}
	}
	return cri.Condition{Ready: true}
}

// runtimeNote is crictl info's word on the OCI runtimes: the handlers,
// which one a request without a handler gets and why, and why any
// installed runtime is left out.
func runtimeNote(f doctor.Features, handlers []string) map[string]any {
	return map[string]any{
		"handlers":      handlers,
		"default":       f.DefaultRuntime,
		"defaultReason": f.DefaultRuntimeReason,
		"refused":       f.OCIRuntimeRefused,
	}
}

func namespaceNote(rootless bool) string {
	if !rootless {
		return "host network, PID and IPC namespaces are the machine's own"
	}
	return "rootless: a pod asking for the host network, PID or IPC namespace gets crib's own namespaces, not the machine's; reach crib's network from the host through the CRI socket, the streaming URL and forwarded host ports, or join it with `crib unshare`"
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return strconv.Quote(errors.New("unencodable: " + err.Error()).Error())
	}
	return string(b)
}

// usableHandlers lists the runtime handlers that work here, the default
// first.
func usableHandlers(f doctor.Features) []string {
	var out []string
	if _, ok := f.OCIRuntimes[f.DefaultRuntime]; ok {
		out = append(out, f.DefaultRuntime)
	}
	for _, name := range []string{"runc", "crun"} {
		if _, ok := f.OCIRuntimes[name]; ok && name != f.DefaultRuntime {
			out = append(out, name)
		}
	}
	return out
}
