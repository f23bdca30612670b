package rootless

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/internal/memtrim"
)

const (
	// fdReady is handed to the child; it writes one byte once it serves.
	fdReady = 3
	// fdActivated is where the child finds the CRI socket systemd
	// activated, when there is one: after the ready pipe.
	fdActivated = fdReady + 1
)

// ParentOptions is what the parent needs from the daemon's wiring.
type ParentOptions struct {
	Config config.Config
	Logger *slog.Logger
	// Args are the command-line arguments after the program name, to
	// re-execute crib as its namespaced child with the same settings.
	Args []string
	// Activated is the CRI socket systemd passed, handed down to the
	// child; nil without socket activation.
	Activated *os.File
	// Ready and Stopping tell systemd (the parent is the process it
	// watches) that the child serves and that crib stops.
	Ready, Stopping func()
	// PlaceCgroups puts the holder's processes where they belong and
	// returns the cgroup settings the daemon is to use (PrepareParent).
	PlaceCgroups func(config.Config, Holder) config.Cgroup
	// Holder is crib's namespaces, once PrepareParent made sure of them.
	Holder *Holder
	// Daemon is the crib binary the child runs; "" is this program.
	Daemon string
}

// PrepareParent is the part of the parent that needs the big crib: once
// the caller holds the instance lock, it makes sure crib's namespaces
// exist (held by a pause process that outlives crib) and places their
// processes in cgroups (PlaceCgroups, which reads the cgroup managers and
// may ask systemd for a scope). It fills in o.Holder and o.Config.Cgroup
// for RunParent, here or in the host-side program crib executes.
func PrepareParent(o *ParentOptions) error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		o.Logger.Warn("cannot become a subreaper; helpers that daemonize may linger as zombies", "err", err)
	}
	uidArgs, gidArgs, err := idMapArgs()
	if err != nil {
		return err
	}
	holder, err := ensureHolder(o.Config.RunRoot, o.Config.Network.Outbound, uidArgs, gidArgs, o.Logger)
	if err != nil {
		return err
	}
	o.Holder = &holder
	// On cgroup v2: crib's processes to a leaf, pods to a delegated
	// sibling, which the daemon gets as its cgroup parent.
	o.Config.Cgroup = o.PlaceCgroups(o.Config, holder)
	return nil
}

// RunParent is the rest of `crib serve` as an unprivileged user, once
// PrepareParent did its part: it starts the daemon inside crib's
// namespaces, serves the host side of the bridge (host dialer, portal)
// and relays signals until the daemon exits. It needs only small
// packages, so the host-side program (cmd/crib-hostside) runs it.
func RunParent(ctx context.Context, o ParentOptions) (retErr error) {
	cfg := o.Config
	if o.Holder == nil {
		return errors.New("internal error: the parent runs without crib's namespaces (PrepareParent)")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		o.Logger.Warn("cannot become a subreaper; helpers that daemonize may linger as zombies", "err", err)
	}
	defer releaseHolderIfIdle(cfg.Root, cfg.RunRoot, o.Logger)
	os.Remove(filepath.Join(cfg.RunRoot, idleMarkerName))

	relay, err := listenRelay(filepath.Join(cfg.RunRoot, relaySocketName))
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	// Once the child serves, the parent only relays: it gives back the
	// memory start-up used, and again after each burst of relaying.
	idler := memtrim.NewIdler(o.Logger)
	defer idler.Stop()
	go serveDialRelay(relayCtx, relay, idler, o.Logger)

	control, err := listenRelay(filepath.Join(cfg.RunRoot, controlSocketName))
	if err != nil {
		return err
	}
	ports := newPortal(filepath.Join(cfg.RunRoot, targetDialSocketName), o.Logger)
	ports.idler = idler
	defer ports.closeAll()
	go ports.serveControl(relayCtx, control)

	child, readyR, err := startChild(o, o.Holder.PID)
	if err != nil {
		return err
	}
	defer readyR.Close()
	pidFile := filepath.Join(cfg.RunRoot, childPIDFileName)
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(child.Process.Pid)+"\n"), 0o600); err != nil {
		child.Process.Kill()
		child.Wait()
		return fmt.Errorf("recording crib's pid: %w", err)
	}
	defer os.Remove(pidFile)
	return superviseChild(ctx, child, readyR, o, idler)
}

const (
	relaySocketName  = "hostdial.sock"
	childPIDFileName = "crib.pid"
)

// idMapArgs reads the user's subordinate ranges and renders the newuidmap
// and newgidmap arguments (the pid is filled in later).
func idMapArgs() (uidArgs, gidArgs func(pid int) []string, err error) {
	u, err := user.Current()
	if err != nil {
		return nil, nil, fmt.Errorf("looking up the current user: %w", err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	uids, err := lookupRanges("/etc/subuid", u.Username, uid)
	if err != nil {
		return nil, nil, err
	}
	gids, err := lookupRanges("/etc/subgid", u.Username, uid)
	if err != nil {
		return nil, nil, err
	}
	return func(pid int) []string { return idmap.NewuidmapArgs(pid, uid, uids) },
		func(pid int) []string { return idmap.NewuidmapArgs(pid, gid, gids) }, nil
}

func lookupRanges(path, name string, uid int) ([]idmap.Range, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w (run `crib doctor` for the fix)", path, err)
	}
	defer f.Close()
	ranges, err := idmap.Lookup(f, name, uid)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("%s has no range for user %s (uid %d): crib needs 65536 subordinate ids; as root run: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s", path, name, uid, name)
	}
	return ranges, nil
}

func listenRelay(path string) (net.Listener, error) {
	removeStale(path)
	return ListenPrivate(path)
}

// ListenPrivate listens on a unix socket at path that only this user may
// connect to (mode 0600). The umask closes the window between bind and
// chmod in which another user could connect.
func ListenPrivate(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// startChild runs crib's daemon inside the holder's user, mount and
// network namespaces, as uid 0 there. Joining a user namespace needs a
// single-threaded process, so nsenter does the joining and then executes
// crib. A socket systemd activated is passed down at fdActivated. The PID
// and IPC namespaces are joined as node.go says.
func startChild(o ParentOptions, holderPID int) (*daemonProcess, *os.File, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer readyW.Close()
	exe := o.Daemon
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			readyR.Close()
			return nil, nil, fmt.Errorf("finding crib's own binary: %w", err)
		}
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		readyR.Close()
		return nil, nil, fmt.Errorf("nsenter (util-linux) joins crib's namespaces and is missing: %w", err)
	}
	node := hasNodeNamespaces(holderPID)
	args := append(append(append([]string{"nsenter"}, joinArgs(holderPID, node)...), "--", exe), o.Args...)
	cmd := &exec.Cmd{Path: nsenter, Args: args}
	portStart := UnprivilegedPortStart()
	h := Handoff{Child: true, ParentPID: os.Getpid(), Config: &o.Config, HostPortStart: &portStart}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{readyW}
	if o.Activated != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, o.Activated)
		h.ListenFD = fdActivated
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a terminal's ^C reaches the parent only,
		// which then stops the child in order.
		Setpgid: true,
	}
	child, err := startDaemonProcess(cmd, h, holderPID, node, o.Logger)
	if err != nil {
		readyR.Close()
		return nil, nil, fmt.Errorf("starting crib in its namespaces: %w", err)
	}
	return child, readyR, nil
}

func writeIDMaps(pid int, uidArgs, gidArgs func(int) []string) error {
	for _, m := range []struct {
		tool string
		args []string
	}{{"newuidmap", uidArgs(pid)}, {"newgidmap", gidArgs(pid)}} {
		out, err := exec.Command(m.tool, m.args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %v: %w: %s (run `crib doctor`)", m.tool, m.args, err, out)
		}
	}
	return nil
}

// superviseChild waits for the child to report that it serves, then relays
// SIGTERM/SIGINT to it and waits for it to exit. It is the parent, the
// process systemd watches, that tells systemd when crib is ready and when
// it stops.
func superviseChild(ctx context.Context, child *daemonProcess, readyR *os.File, o ParentOptions, idler *memtrim.Idler) error {
	log := o.Logger
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	defer relayHangups(child.Process)()

	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	go func() {
		b := make([]byte, 1)
		if n, _ := io.ReadFull(readyR, b); n == 1 {
			log.Debug("crib child is serving", "pid", child.Process.Pid)
			o.Ready()
			idler.End() // start-up
		}
	}()

	for {
		select {
		case err := <-exited:
			return childExitError(err)
		case s := <-sigs:
			log.Info("stopping", "signal", s.String())
			o.Stopping()
			child.Process.Signal(syscall.SIGTERM)
			return waitChildStop(child, exited, log)
		case <-ctx.Done():
			o.Stopping()
			child.Process.Signal(syscall.SIGTERM)
			return waitChildStop(child, exited, log)
		}
	}
}

// childStopGrace bounds how long a stopping child may take before the
// parent kills it; the child's own gRPC drain is shorter.
const childStopGrace = 30 * time.Second

func waitChildStop(child *daemonProcess, exited chan error, log *slog.Logger) error {
	select {
	case err := <-exited:
		return childExitError(err)
	case <-time.After(childStopGrace):
		log.Warn("crib child did not stop in time; killing it", "pid", child.Process.Pid)
		child.Process.Kill()
		<-exited
		return errors.New("crib's child had to be killed on stop")
	}
}

func childExitError(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("crib's child was killed by %v", ws.Signal())
		}
		return &ExitCodeError{Code: ee.ExitCode()}
	}
	return err
}

// ExitCodeError is a child that already reported its error and exited
// with a code the parent should exit with too (or any crib process that
// has said what went wrong and only has a code left to exit with).
type ExitCodeError struct{ Code int }

func (e *ExitCodeError) Error() string { return "exit status " + strconv.Itoa(e.Code) }

// relayHangups passes each SIGHUP the parent gets (systemd's ExecReload,
// an operator's kill -HUP of the pid it knows) on to the child, which
// reloads registries.conf and policy.json; the returned function stops.
func relayHangups(child *os.Process) (stop func()) {
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hups:
				child.Signal(syscall.SIGHUP)
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(hups); close(done) }
}
