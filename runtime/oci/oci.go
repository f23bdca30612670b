package oci

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Runtime is one OCI runtime handler as crib drives it.
type Runtime interface {
	// Name is the handler's name.
	Name() string
	// SpecVersion is the ociVersion to write into config.json for a spec
	// generated as version v: the newest one the runtime accepts.
	SpecVersion(v string) string
	// Create has the monitor run the runtime's create: namespaces and
	// init exist, the command has not run. It returns once the monitor
	// reported the init's pid; on failure no monitor is left.
	Create(ctx context.Context, r CreateRequest) (Created, error)
	// Monitoring reports whether pid is a live monitor of container id
	// (checked on the process itself, so a recycled pid never counts).
	Monitoring(pid int, id string) bool
	// KillMonitor SIGKILLs the monitor of id if pid still is one.
	KillMonitor(pid int, id string)
	Start(ctx context.Context, id string) error
	// Kill signals the container's init, or with all every process in
	// its cgroup; a container already gone or stopped is no error.
	Kill(ctx context.Context, id string, sig unix.Signal, all bool) error
	// Delete removes the runtime's state of the container, killing it
	// first if needed; deleting what does not exist succeeds.
	Delete(ctx context.Context, id string) error
	// State is the runtime's view; an unknown id is errdefs.ErrNotFound.
	State(ctx context.Context, id string) (State, error)
	// Update applies new resource limits to a live container.
	Update(ctx context.Context, id string, res *specs.LinuxResources) error
	// Exec runs a process in the running container until it exits or
	// ctx ends; see ExecRequest.
	Exec(ctx context.Context, r ExecRequest) (ExecExit, error)
}

// Config is one handler and the monitor that runs it.
type Config struct {
	// Name is the handler's name; it chooses the implementation (runc or
	// crun) unless Path's base name is one of those.
	Name string
	// Path is the runtime binary, Root its --root state directory.
	Path, Root string
	// SystemdCgroup makes the runtime and the monitor treat cgroup paths
	// as systemd "slice:prefix:name" triples.
	SystemdCgroup bool
	// Monitor is conmon and where it writes exit files and attach links.
	Monitor Monitor
	// Runner runs every command; nil runs them directly.
	Runner Runner
}

// Monitor configures conmon.
type Monitor struct {
	// Path is conmon; "" searches PATH.
	Path string
	// ExitDir gets <id> files with the exit status; AttachDir <id> links
	// to the bundle with its attach socket.
	ExitDir, AttachDir string
}

// Runner starts and waits for commands on behalf of a subreaper;
// runtime.Reaper is one.
type Runner interface {
	Start(cmd *exec.Cmd) error
	Wait(cmd *exec.Cmd) error
	Run(cmd *exec.Cmd) error
	// Kick asks for a scan for orphans after crib made some.
	Kick()
	// WaitAdopted waits for an orphan crib adopted.
	WaitAdopted(pid int) (unix.WaitStatus, error)
}

// State is the part of the runtime's state output crib reads.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

// Live reports whether the runtime says the container has processes.
func (s State) Live() bool {
	return s.Status == "running" || s.Status == "created" || s.Status == "paused"
}

// CreateRequest is one container for the monitor to create.
type CreateRequest struct {
	ID, Name string
	// Bundle holds config.json; it is also the monitor's persist dir
	// (its exit, oom, ctl and attach files).
	Bundle string
	// PidFile gets the init's pid (written by the runtime), MonitorPidFile
	// the monitor's.
	PidFile, MonitorPidFile string
	// LogPath is the CRI log; "" means none.
	LogPath string
	// TTY gives the container a pty; Stdin keeps its stdin open for
	// attach clients, StdinOnce closes it when the first one leaves.
	TTY, Stdin, StdinOnce bool
}

// Created is what the monitor reported.
type Created struct {
	Pid        int // the container's init
	MonitorPid int
}

// TerminalSize is a terminal's size in character cells.
type TerminalSize struct {
	Width, Height uint16
}

// ExecRequest is one process to run in a running container.
type ExecRequest struct {
	ID string
	// ProcessFile is the process's OCI JSON; PidFile gets its pid.
	ProcessFile, PidFile string
	// Stdin is nil for no input; its EOF closes the process's stdin.
	// Stdout and Stderr may be nil (dropped); with TTY all output goes
	// to Stdout.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TTY runs the process on a pty the runtime makes; ConsoleDir is
	// where the console socket it passes the pty on is made (a short
	// path: a unix socket's name is limited). Resize carries sizes.
	TTY        bool
	ConsoleDir string
	Resize     <-chan TerminalSize
}

// ExecExit is how an exec'd process ended.
type ExecExit struct {
	// Code is its exit status, 128+signal for a signal.
	Code int
	// Killed: ctx ended first and the process, with everything it
	// started, was killed; Code is then 128+SIGKILL.
	Killed bool
}

// New returns the runtime for c, chosen by name: runc or crun.
func New(c Config) (Runtime, error) {
	if c.Name == "" || c.Path == "" || c.Root == "" {
		return nil, fmt.Errorf("%w: runtime handler %+v needs a name, a path and a root", errdefs.ErrInvalidArgument, c)
	}
	mon := c.Monitor.Path
	if mon == "" {
		mon = "conmon"
	}
	path, err := exec.LookPath(mon)
	if err != nil {
		return nil, fmt.Errorf("%w: the monitor %s: %v", errdefs.ErrUnavailable, mon, err)
	}
	c.Monitor.Path = path
	if c.Runner == nil {
		c.Runner = directRunner{}
	}
	switch kindOf(c) {
	case "runc":
		return newRunc(c), nil
	case "crun":
		return newCrun(c), nil
	}
	return nil, fmt.Errorf("%w: runtime handler %q: crib knows runc and crun, not %s", errdefs.ErrInvalidArgument, c.Name, filepath.Base(c.Path))
}

func kindOf(c Config) string {
	for _, k := range []string{c.Name, filepath.Base(c.Path)} {
		if k == "runc" || k == "crun" {
			return k
		}
	}
	return ""
}

// directRunner runs commands without a subreaper.
type directRunner struct{}

func (directRunner) Start(cmd *exec.Cmd) error { return cmd.Start() }
func (directRunner) Wait(cmd *exec.Cmd) error  { return cmd.Wait() }
func (directRunner) Run(cmd *exec.Cmd) error   { return cmd.Run() }
func (directRunner) Kick()                     {}
func (directRunner) WaitAdopted(pid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	_, err := unix.Wait4(pid, &ws, 0, nil)
	return ws, err
}
