package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/errdefs"
)

// Options wires a Host.
type Options struct {
	Config         config.NRI
	RuntimeName    string
	RuntimeVersion string
	// Rootless turns on the checks for adjustments only real root can
	// apply.
	Rootless bool
	// State lists the pods and containers that exist, for the
	// synchronisation of a plugin that registers (or see Bind).
	State func() ([]Pod, []Container)
	// Update applies new resources to a container a plugin asked to
	// update outside of one of its own events (or see Bind).
	Update func(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error
	// Log receives the library's messages; nil means slog.Default().
	Log *slog.Logger
}

// Host is the running NRI adaptation.
type Host struct {
	opts Options
	a    *adaptation.Adaptation

	// stopMu serialises StopContainer events and guards stopped, the
	// containers whose StopContainer event went out, so that an exit
	// seen by the event relay and an explicit stop send one event, and
	// RemoveContainer always follows it.
	stopMu  sync.Mutex
	stopped map[string]bool
}

// ConfigureLibrary sets what the NRI library keeps process-wide: the
// plugins' registration and request timeouts and its logger. The library
// holds them in package variables its goroutines read unguarded, so a
// process calls this once, before its first New (the daemon's wiring
// does); calling it while a host runs is a data race.
func ConfigureLibrary(cfg config.NRI, log *slog.Logger) error {
	if err := setLibraryTimeouts(cfg); err != nil {
		return err
	}
	if log == nil {
		log = slog.Default()
	}
	nrilog.Set(slogger{log.With("component", "nri")})
	return nil
}

func setLibraryTimeouts(cfg config.NRI) error {
	reg, err := time.ParseDuration(cfg.RegistrationTimeout)
	if err != nil {
		return fmt.Errorf("nri registration timeout: %w", err)
	}
	req, err := time.ParseDuration(cfg.RequestTimeout)
	if err != nil {
		return fmt.Errorf("nri request timeout: %w", err)
	}
	adaptation.SetPluginRegistrationTimeout(reg)
	adaptation.SetPluginRequestTimeout(req)
	return nil
}

// New builds the host; Start starts it. It returns nil, nil when NRI is
// not enabled.
func New(opts Options) (*Host, error) {
	cfg := opts.Config
	if !cfg.Enable {
		return nil, nil
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	h := &Host{opts: opts, stopped: map[string]bool{}}
	a, err := adaptation.New(opts.RuntimeName, opts.RuntimeVersion, h.sync, h.updateFromPlugin,
		adaptation.WithPluginPath(cfg.PluginDir),
		adaptation.WithPluginConfigPath(cfg.PluginConfigDir),
		adaptation.WithSocketPath(cfg.SocketPath),
		adaptation.WithBuiltinPlugins(h.validator()),
	)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	h.a = a
	return h, nil
}

// Bind sets where the host reads the pods and containers a registering
// plugin is synchronised with, and how it applies a plugin's own updates:
// the CRI layer, which builds after the host. Call it before Start.
func (h *Host) Bind(state func() ([]Pod, []Container), update func(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error) {
	if h == nil {
		return
	}
	h.opts.State, h.opts.Update = state, update
}

// Start launches the pre-installed plugins and opens the socket, which
// only crib's user may reach (the library makes its directory 0700; the
// socket is made 0600 here).
func (h *Host) Start() error {
	if h == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(h.opts.Config.SocketPath), 0o700); err != nil {
		return fmt.Errorf("nri socket directory: %w", err)
	}
	if err := h.a.Start(); err != nil {
		return fmt.Errorf("nri: %w", err)
	}
	if err := os.Chmod(h.opts.Config.SocketPath, 0o600); err != nil {
		h.a.Stop()
		return fmt.Errorf("nri socket: %w", err)
	}
	return nil
}

// Stop stops every plugin crib started and closes the socket.
func (h *Host) Stop() {
	if h == nil {
		return
	}
	h.a.Stop()
	os.Remove(h.opts.Config.SocketPath)
}

// sync hands a registering plugin every pod and container. The library
// holds plugin synchronisation exclusively meanwhile, and CreateContainer
// holds it shared until the container is recorded, so a container is
// either in this list or sent to the plugin as a CreateContainer event.
func (h *Host) sync(ctx context.Context, cb adaptation.SyncCB) error {
	var pods []Pod
	var ctrs []Container
	if h.opts.State != nil {
		pods, ctrs = h.opts.State()
	}
	apiPods := make([]*api.PodSandbox, 0, len(pods))
	for _, p := range pods {
		apiPods = append(apiPods, podSandbox(p))
	}
	apiCtrs := make([]*api.Container, 0, len(ctrs))
	for _, c := range ctrs {
		apiCtrs = append(apiCtrs, container(c))
	}
	updates, err := cb(ctx, apiPods, apiCtrs)
	if err != nil {
		return err
	}
	h.applyUpdates(ctx, updates)
	return nil
}

// updateFromPlugin applies updates a plugin asks for on its own; it
// returns the ones that failed.
func (h *Host) updateFromPlugin(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return h.applyUpdates(ctx, updates), nil
}

func (h *Host) applyUpdates(ctx context.Context, updates []*api.ContainerUpdate) []*api.ContainerUpdate {
	var failed []*api.ContainerUpdate
	for _, u := range updates {
		if h.opts.Update == nil {
			failed = append(failed, u)
			continue
		}
		res := criResources(nil, u.GetLinux().GetResources())
		if err := h.opts.Update(ctx, u.GetContainerId(), res); err != nil {
			h.opts.Log.Warn("nri: a plugin's container update failed", "id", u.GetContainerId(), "err", err)
			if !u.GetIgnoreFailure() {
				failed = append(failed, u)
			}
		}
	}
	return failed
}

// fail turns a plugin's refusal into crib's error: the request cannot go
// on in the state the plugins put it in.
func fail(event string, err error) error {
	if errors.Is(err, errdefs.ErrInvalidArgument) || errors.Is(err, errdefs.ErrFailedPrecondition) {
		return fmt.Errorf("nri %s: %w", event, err)
	}
	return fmt.Errorf("nri %s: %v: %w", event, err, errdefs.ErrFailedPrecondition)
}

// slogger routes the library's log lines to crib's logger.
type slogger struct{ l *slog.Logger }

func (s slogger) Debugf(_ context.Context, f string, a ...any) { s.l.Debug(fmt.Sprintf(f, a...)) }
func (s slogger) Infof(_ context.Context, f string, a ...any)  { s.l.Debug(fmt.Sprintf(f, a...)) }
func (s slogger) Warnf(_ context.Context, f string, a ...any)  { s.l.Warn(fmt.Sprintf(f, a...)) }
func (s slogger) Errorf(_ context.Context, f string, a ...any) { s.l.Error(fmt.Sprintf(f, a...)) }
