package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/server/doctor"
	"github.com/crib-dev/crib/server/rootless"
)

// Options configures Serve.
type Options struct {
	Config  config.Config
	Version string
	Logger  *slog.Logger
	// Args are the command-line arguments after the program name, used to
	// re-execute crib as its namespaced child with the same settings.
	Args []string
}

// ExitCodeError is a crib process that has reported its error and only
// has a code left to exit with.
type ExitCodeError = rootless.ExitCodeError

// PrereqError is returned when a hard requirement is missing; it carries
// the doctor's report so the caller can print the same words `crib doctor`
// prints.
type PrereqError struct {
	Report doctor.Report
}

func (e *PrereqError) Error() string {
	var names []string
	for _, c := range e.Report.HardFailures() {
		names = append(names, c.Title)
	}
	return "missing prerequisites: " + strings.Join(names, "; ") + " (run `crib doctor` for the fixes)"
}

// Serve runs `crib serve` until a signal or ctx ends it. As an
// unprivileged user it is the parent of the bootstrap and re-executes
// itself; the re-executed stages come back through Serve too, told apart
// by an internal environment variable.
func Serve(ctx context.Context, o Options) error {
	EnsureSbinInPath()
	if rootless.IsChild() {
		return runChild(ctx, o)
	}
	sd, err := takeSystemdHandoff(o.Logger)
	if err != nil {
		return err
	}
	report := doctor.Run(doctor.CurrentHost(o.Config), o.Config)
	if len(report.HardFailures()) > 0 {
		return &PrereqError{Report: report}
	}
	if err := os.MkdirAll(o.Config.RunRoot, 0o700); err != nil {
		return fmt.Errorf("creating runroot: %w", err)
	}
	if err := saveHostReport(o.Config.RunRoot, report); err != nil {
		return err
	}
	if report.Rootful {
		return runRootful(ctx, o, sd)
	}
	return runParent(ctx, o, sd)
}

// runParent is the rootless parent (package rootless) under the instance
// lock. crib prepares crib's namespaces and cgroups, then hands the
// long-lived rest to the small host-side program beside its binary
// (rootless.ExecHostSide), so that the process that stays maps none of
// crib's own binary. Without that program it runs the rest itself and
// says so: the same code, at the cost of the big binary's pages and
// heap for as long as crib runs.
func runParent(ctx context.Context, o Options, sd systemdHandoff) error {
	lock, err := acquireInstanceLock(o.Config.Root, o.Config.RunRoot)
	if err != nil {
		return err
	}
	defer lock.release()
	po := rootless.ParentOptions{
		Config:    o.Config,
		Logger:    o.Logger,
		Args:      o.Args,
		Activated: sd.socket,
		Ready:     func() { sd.notify.Ready("serving CRI on " + o.Config.Listen) },
		Stopping:  sd.notify.Stopping,
		PlaceCgroups: func(cfg config.Config, h rootless.Holder) config.Cgroup {
			return placeCgroups(cfg, h, o.Logger)
		},
	}
	if err := rootless.PrepareParent(&po); err != nil {
		return err
	}
	handOver(po, lock, sd, o)
	return rootless.RunParent(ctx, po)
}

// handOver executes the host-side program; it returns only when that
// program is missing or cannot run, having said so.
func handOver(po rootless.ParentOptions, lock *instanceLock, sd systemdHandoff, o Options) {
	exe, err := os.Executable()
	if err != nil {
		o.Logger.Warn("the host-side parent stays in crib", "err", fmt.Errorf("finding crib's own binary: %w", err))
		return
	}
	path, err := rootless.FindHostSide(exe)
	if err == nil {
		err = rootless.ExecHostSide(path, po, rootless.ParentHandoff{
			Daemon: exe, LockFDs: lock.fds(), NotifySocket: sd.notify.Socket, Version: o.Version,
		})
	}
	o.Logger.Warn("the host-side parent stays in crib, which costs memory for as long as crib runs", "err", err)
}

// runChild is the daemon inside crib's namespaces, as root there.
func runChild(ctx context.Context, o Options) error {
	c, err := rootless.StartChild(o.Logger)
	if err != nil {
		return err
	}
	defer c.Close()
	// Uid 0 inside would make the child compute root's defaults: it
	// takes the parent's effective configuration instead.
	o.Config = c.Config
	return runDaemon(ctx, o, daemonEnv{
		activated:     c.Activated,
		idleMarker:    c.IdleMarker,
		rootless:      true,
		relaySock:     c.RelaySock,
		hostPortStart: c.HostPortStart,
		ready:         c.Ready,
	})
}

func runRootful(ctx context.Context, o Options, sd systemdHandoff) error {
	lock, err := acquireInstanceLock(o.Config.Root, o.Config.RunRoot)
	if err != nil {
		return err
	}
	defer lock.release()
	return runDaemon(ctx, o, daemonEnv{
		ready:         func() { sd.notify.Ready("serving CRI on " + o.Config.Listen) },
		stopping:      sd.notify.Stopping,
		activated:     sd.socket,
		hostPortStart: rootless.UnprivilegedPortStart(),
	})
}

const hostReportName = "host.json"

// The parent measures the host from the host's namespaces, where the
// answers are true; the child, seeing itself as root, reads them back.
func saveHostReport(runRoot string, r doctor.Report) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := filepath.Join(runRoot, hostReportName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("saving host report: %w", err)
	}
	return os.Rename(tmp, path)
}

func loadHostReport(runRoot string) (doctor.Report, error) {
	var r doctor.Report
	data, err := os.ReadFile(filepath.Join(runRoot, hostReportName))
	if err != nil {
		return r, fmt.Errorf("reading the host report the parent saved: %w", err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, errors.New("host report is corrupt: " + err.Error())
	}
	return r, nil
}

// EnsureSbinInPath adds the sbin directories to PATH: runc, iptables and
// the tools CNI plugins call live there on Debian, off a normal user's
// PATH.
func EnsureSbinInPath() {
	path := os.Getenv("PATH")
	have := map[string]bool{}
	for _, d := range filepath.SplitList(path) {
		have[d] = true
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if !have[d] {
			if path != "" {
				path += ":"
			}
			path += d
		}
	}
	os.Setenv("PATH", path)
}
