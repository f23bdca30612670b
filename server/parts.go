package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/crib-dev/crib/cri"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/runtime/cgroups"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/server/doctor"
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

// hostPortStartEnv carries the host's net.ipv4.ip_unprivileged_port_start
// from the parent: the child's own /proc/sys shows its namespace's value.
const hostPortStartEnv = "_CRIB_HOST_PORT_START"

func startParts(ctx context.Context, o Options, report doctor.Report, env daemonEnv, hs *hostSide, store *storage.Store) (*parts, error) {
	cfg := o.Config
	log := o.Logger
	p := &parts{storageDriver: store.Driver()}
	reaper, err := runtime.StartReaper(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("starting the reaper: %w", err)
	}
	cg, why, err := cgroups.Detect(cgroups.DetectOptions{Manager: cfg.Cgroup.Manager, Parent: cfg.Cgroup.Parent})
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	p.cgroups, p.cgroupReason = cg, why
	log.Info("cgroups", "manager", cg.Name(), "version", cg.Version(), "reason", why)
	p.cgroupUse = recordCgroupUse(cfg.RunRoot, cg, why, log)
	p.closers = append(p.closers, func() { os.Remove(filepath.Join(cfg.RunRoot, doctor.CgroupsFileName)) })

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
		ContainerCgroup:    cg.ContainerPath,
	}

	var hostPorts sandbox.HostPorts
	if hs.ports != nil {
		hostPorts = portalHostPorts{hs.ports}
	}
	p.pods, err = sandbox.New(sandbox.Options{
		Root:                  cfg.Root,
		RunRoot:               cfg.RunRoot,
		Rootless:              env.rootless,
		CNIConfDir:            cfg.Network.CNIConfDir,
		CNIPluginDirs:         cfg.Network.CNIPluginDirs,
		CatatonitPath:         report.Features.Programs["catatonit"],
		Cgroups:               cg,
		HostPorts:             hostPorts,
		UnprivilegedPortStart: hostUnprivilegedPortStart(env),
		Logger:                log,
	})
	if err != nil {
		return nil, fmt.Errorf("pods: %w", err)
	}
	p.containers, err = runtime.New(runtime.Options{
		Root:           cfg.Root,
		RunRoot:        cfg.RunRoot,
		Handlers:       handlers(report, cfg.RunRoot),
		DefaultHandler: report.Features.DefaultRuntime,
		ConmonPath:     report.Features.Conmon,
		Rootless:       env.rootless,
		Cgroups:        cg,
		Host:           &host,
		Reaper:         reaper,
		Logger:         log,
	})
	if err != nil {
		return nil, fmt.Errorf("containers: %w", err)
	}
	p.closers = append(p.closers, p.containers.Close)
	log.Info("OCI runtime handlers", "handlers", usableHandlers(report.Features), "default", report.Features.DefaultRuntime,
		"reason", report.Features.DefaultRuntimeReason)

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
		"containers_cleaned", len(crep.Cleaned),
		"pods_ready", len(prep.Ready), "pods_not_ready", len(prep.NotReady), "pods_cleaned", len(prep.Removed),
		"rootfs_cleaned", len(rootfs))
	writeRecovery(cfg.RunRoot, recoveryRecord(crep, prep, rootfs, append([]error{cerr, perr}, rerrs...)), log)
	return p, nil
}

func handlers(r doctor.Report, runRoot string) []runtime.Handler {
	var out []runtime.Handler
	for _, name := range usableHandlers(r.Features) {
		out = append(out, runtime.Handler{Name: name, Path: r.Features.OCIRuntimes[name], Root: filepath.Join(runRoot, name),
			SpecVersion: runtime.SpecVersionFor(name, r.Features.OCIRuntimeVersions[name])})
	}
	return out
}

func hostUnprivilegedPortStart(env daemonEnv) int {
	if v, err := strconv.Atoi(os.Getenv(hostPortStartEnv)); err == nil {
		return v
	}
	return readUnprivilegedPortStart()
}

// portalHostPorts adapts the parent's portal to the sandbox package: a
// pod's host port forwards to its IP and container port inside crib's
// namespace, or to crib's own loopback for a pod on crib's network.
type portalHostPorts struct{ c *portalClient }

func (h portalHostPorts) Expose(ctx context.Context, podID string, ports []sandbox.PortMapping) error {
	var fwd []PortForward
	for _, pm := range ports {
		target := pm.PodIP
		if target == "" {
			target = "127.0.0.1"
		}
		fwd = append(fwd, PortForward{
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
