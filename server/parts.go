package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/crib-dev/crib/cri"
	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/runtime/cgroups"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/server/doctor"
	"github.com/crib-dev/crib/server/rootless"
	"github.com/crib-dev/crib/storage"
)

// parts are the pod and container machinery the daemon wires into cri.
type parts struct {
	cgroups       cgroups.Manager
	cgroupReason  string
	cgroupUse     doctor.CgroupUse
	storageDriver storage.DriverChoice
	pods          *sandbox.Manager
	containers    *runtime.Manager
	spec          cri.SpecDefaults
	closers       []func()
}

func (p *parts) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// startParts makes the pod and container machinery and re-attaches what
// a previous crib left running.
func startParts(ctx context.Context, o Options, report doctor.Report, env daemonEnv, hs *rootless.HostSide, store *storage.Store) (*parts, error) {
	cfg := o.Config
	log := o.Logger
	p := &parts{storageDriver: store.Driver()}
	reaper, err := runtime.StartReaper(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("starting the reaper: %w", err)
	}
	if err := p.detectCgroups(cfg, log); err != nil {
		return nil, err
	}
	host, err := runtime.ProbeHost()
	if err != nil {
		return nil, fmt.Errorf("probing the host for container specs: %w", err)
	}
	// runc 1.1 does not know the "rro" option even where the kernel does.
	host.RecursiveReadOnly = false
	p.spec = cri.SpecDefaults{
		Host:               host,
		Rootless:           env.rootless,
		SeccompProfileRoot: filepath.Join(cfg.Root, "seccomp"),
		ContainerCgroup:    p.cgroups.ContainerPath,
	}
	if p.pods, err = newPods(cfg, report, env, hs, p.cgroups, log); err != nil {
		return nil, err
	}
	p.containers, err = runtime.New(runtime.Options{
		Root:           cfg.Root,
		RunRoot:        cfg.RunRoot,
		Handlers:       handlers(report, cfg.RunRoot, env.rootless, log),
		DefaultHandler: report.Features.DefaultRuntime,
		ConmonPath:     report.Features.Conmon,
		Rootless:       env.rootless,
		UsernsRoot:     usernsRootDir(cfg.RunRoot),
		Cgroups:        p.cgroups,
		Host:           &host,
		Reaper:         reaper,
		RootfsUsage:    store.ContainerUsage,
		Logger:         log,
	})
	if err != nil {
		return nil, fmt.Errorf("containers: %w", err)
	}
	p.closers = append(p.closers, p.containers.Close)
	log.Info("OCI runtime handlers", "handlers", usableHandlers(report.Features), "default", report.Features.DefaultRuntime,
		"reason", report.Features.DefaultRuntimeReason)
	p.recover(ctx, cfg.RunRoot, store, log)
	return p, nil
}

// detectCgroups picks the cgroup manager and records what pods get.
func (p *parts) detectCgroups(cfg config.Config, log *slog.Logger) error {
	cg, why, err := cgroups.Detect(cgroups.DetectOptions{Manager: cfg.Cgroup.Manager, Parent: cfg.Cgroup.Parent})
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	p.cgroups, p.cgroupReason = cg, why
	log.Info("cgroups", "manager", cg.Name(), "version", cg.Version(), "reason", why)
	p.cgroupUse = recordCgroupUse(cfg.RunRoot, cg, why, log)
	p.closers = append(p.closers, func() { os.Remove(filepath.Join(cfg.RunRoot, doctor.CgroupsFileName)) })
	return nil
}

// newPods is the pod machinery, with host ports through the parent's
// portal when crib is rootless.
func newPods(cfg config.Config, report doctor.Report, env daemonEnv, hs *rootless.HostSide, cg cgroups.Manager, log *slog.Logger) (*sandbox.Manager, error) {
	var hostPorts sandbox.HostPorts
	if hs.Ports != nil {
		hostPorts = portalHostPorts{hs.Ports}
	}
	pods, err := sandbox.New(sandbox.Options{
		Root:                  cfg.Root,
		RunRoot:               cfg.RunRoot,
		Rootless:              env.rootless,
		CNIConfDir:            cfg.Network.CNIConfDir,
		CNIPluginDirs:         cfg.Network.CNIPluginDirs,
		CatatonitPath:         report.Features.Programs["catatonit"],
		Cgroups:               cg,
		HostPorts:             hostPorts,
		UnprivilegedPortStart: env.hostPortStart,
		Logger:                log,
	})
	if err != nil {
		return nil, fmt.Errorf("pods: %w", err)
	}
	return pods, nil
}

// recover re-attaches the containers and pods a previous crib left,
// removes container filesystems nothing owns, and records the outcome
// for `crib doctor`.
func (p *parts) recover(ctx context.Context, runRoot string, store *storage.Store, log *slog.Logger) {
	crep, cerr := p.containers.Recover(ctx)
	if cerr != nil {
		log.Warn("recovering containers", "err", cerr)
	}
	prep, perr := p.pods.Recover(ctx)
	if perr != nil {
		log.Warn("recovering pods", "err", perr)
	}
	rootfs, rerrs := removeOrphanRootfs(store, p.containers)
	for _, err := range rerrs {
		log.Warn("recovering container filesystems", "err", err)
	}
	log.Info("recovered state",
		"containers_reattached", len(crep.Reattached), "containers_exited", len(crep.Exited), "containers_lost", len(crep.Lost),
		"containers_cleaned", len(crep.Cleaned), "containers_unstarted", len(crep.Unstarted),
		"pods_ready", len(prep.Ready), "pods_not_ready", len(prep.NotReady), "pods_cleaned", len(prep.Removed),
		"rootfs_cleaned", len(rootfs))
	writeRecovery(runRoot, recoveryRecord(crep, prep, rootfs, append([]error{cerr, perr}, rerrs...)), log)
}

// handlers are the usable runtime handlers. The rootless child runs each
// runtime from a read-only bind of its binary (rootless/runtimebin.go:
// crun then skips copying itself at every command); elsewhere, or when
// the bind fails, from where it was found.
func handlers(r doctor.Report, runRoot string, rootlessChild bool, log *slog.Logger) []runtime.Handler {
	var out []runtime.Handler
	for _, name := range usableHandlers(r.Features) {
		path := r.Features.OCIRuntimes[name]
		if rootlessChild {
			if bound, err := rootless.ReadOnlyBinary(filepath.Join(runRoot, "bin", name), path); err != nil {
				log.Warn("running the OCI runtime from its own path", "handler", name, "err", err)
			} else {
				path = bound
			}
		}
		out = append(out, runtime.Handler{Name: name, Path: path, Root: filepath.Join(runRoot, name)})
	}
	return out
}

// portalHostPorts adapts the parent's portal to the sandbox package: a
// pod's host port forwards to its IP and container port inside crib's
// namespace, or to crib's own loopback for a pod on crib's network.
type portalHostPorts struct{ c *rootless.PortalClient }

func (h portalHostPorts) Expose(ctx context.Context, podID string, ports []sandbox.PortMapping) error {
	var fwd []rootless.PortForward
	for _, pm := range ports {
		target := pm.PodIP
		if target == "" {
			target = "127.0.0.1"
		}
		fwd = append(fwd, rootless.PortForward{
			Protocol: strings.ToLower(pm.Protocol),
			HostIP:   pm.HostIP,
			HostPort: pm.HostPort,
			Target:   target + ":" + strconv.Itoa(pm.ContainerPort),
		})
	}
	return h.c.Expose(ctx, "pod:"+podID, fwd)
}

func (h portalHostPorts) Unexpose(ctx context.Context, podID string) error {
	return h.c.Unexpose(ctx, "pod:"+podID)
}
