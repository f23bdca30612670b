// Package ocifake is an oci.Runtime for tests: it keeps containers in
// memory and plays the monitor's part that crib observes (the exit file
// a container's end writes into the exit directory), so runtime.Manager's
// life cycle can be tested without root, runc or conmon.
package ocifake

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime/oci"
)

// Runtime is the fake. Its containers' init is the test process itself
// (a live pid in the caller's own mount namespace, which the census
// leaves alone); nothing is ever signalled.
type Runtime struct {
	cfg oci.Config

	mu         sync.Mutex
	containers map[string]*container
	calls      []string
	// Fail makes the named operation ("create", "start", "kill",
	// "delete", "state", "update", "exec") fail with the error.
	Fail map[string]error
	// ExecFunc runs an exec in place of a real process; nil exits 0.
	ExecFunc func(ctx context.Context, r oci.ExecRequest) (oci.ExecExit, error)
	// IgnoreSignals lists signals the fake's containers survive (a
	// process that ignores SIGTERM).
	IgnoreSignals []unix.Signal
}

type container struct {
	status  string // created, running, stopped
	monitor bool   // the monitor lives
	res     *specs.LinuxResources
}

// New returns a fake for c; tests pass it as runtime.Options.NewRuntime.
func New(c oci.Config) *Runtime {
	return &Runtime{cfg: c, containers: map[string]*container{}, Fail: map[string]error{}}
}

// Calls lists the operations made, as "op id [args]".
func (r *Runtime) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// Status is the fake's state of id ("" when it has none).
func (r *Runtime) Status(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok {
		return c.status
	}
	return ""
}

// Resources is what the last Update of id applied.
func (r *Runtime) Resources(id string) *specs.LinuxResources {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok {
		return c.res
	}
	return nil
}

// call records an operation and returns its injected failure.
func (r *Runtime) call(op, id string, args ...string) error {
	r.calls = append(r.calls, strings.Join(append([]string{op, id}, args...), " "))
	return r.Fail[op]
}

func (r *Runtime) Name() string { return r.cfg.Name }

// SpecVersion accepts every version.
func (r *Runtime) SpecVersion(v string) string { return v }

func (r *Runtime) Create(ctx context.Context, req oci.CreateRequest) (oci.Created, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call("create", req.ID); err != nil {
		return oci.Created{}, err
	}
	if _, ok := r.containers[req.ID]; ok {
		return oci.Created{}, fmt.Errorf("%s create of container %s failed: container exists", r.cfg.Name, req.ID)
	}
	r.containers[req.ID] = &container{status: "created", monitor: true}
	return oci.Created{Pid: os.Getpid(), MonitorPid: os.Getpid()}, nil
}

// Monitoring: the fake's monitor lives from Create until the container
// ends or KillMonitor.
func (r *Runtime) Monitoring(pid int, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	return ok && c.monitor && pid == os.Getpid()
}

func (r *Runtime) KillMonitor(pid int, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "kill-monitor "+id)
	if c, ok := r.containers[id]; ok {
		c.monitor = false
	}
}

func (r *Runtime) Start(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call("start", id); err != nil {
		return err
	}
	c, ok := r.containers[id]
	switch {
	case !ok:
		return fmt.Errorf("%s start: container %s does not exist", r.cfg.Name, id)
	case c.status != "created":
		return fmt.Errorf("%s start: cannot start a container that is %s", r.cfg.Name, c.status)
	}
	c.status = "running"
	return nil
}

// Kill ends a live container with 128+sig, as its monitor would record,
// unless the signal is one it ignores.
func (r *Runtime) Kill(ctx context.Context, id string, sig unix.Signal, all bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	args := []string{strconv.Itoa(int(sig))}
	if all {
		args = append(args, "all")
	}
	if err := r.call("kill", id, args...); err != nil {
		return err
	}
	c, ok := r.containers[id]
	if !ok || c.status == "stopped" {
		return nil
	}
	for _, s := range r.IgnoreSignals {
		if s == sig {
			return nil
		}
	}
	return r.exit(id, c, 128+int(sig))
}

// Exit ends container id's init with code, as if it exited by itself.
func (r *Runtime) Exit(id string, code int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return fmt.Errorf("%w: fake has no container %s", errdefs.ErrNotFound, id)
	}
	return r.exit(id, c, code)
}

// exit writes the exit file the way conmon does: a temporary file, then
// a rename into the exit directory.
func (r *Runtime) exit(id string, c *container, code int) error {
	c.status, c.monitor = "stopped", false
	tmp := filepath.Join(r.cfg.Monitor.ExitDir, "."+id)
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(code)), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.cfg.Monitor.ExitDir, id))
}

func (r *Runtime) Delete(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call("delete", id); err != nil {
		return err
	}
	delete(r.containers, id)
	return nil
}

func (r *Runtime) State(ctx context.Context, id string) (oci.State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call("state", id); err != nil {
		return oci.State{}, err
	}
	c, ok := r.containers[id]
	if !ok {
		return oci.State{}, fmt.Errorf("%w: %s has no container %s", errdefs.ErrNotFound, r.cfg.Name, id)
	}
	return oci.State{ID: id, Pid: os.Getpid(), Status: c.status}, nil
}

func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.call("update", id); err != nil {
		return err
	}
	c, ok := r.containers[id]
	if !ok {
		return fmt.Errorf("%s update: container %s does not exist", r.cfg.Name, id)
	}
	c.res = res
	return nil
}

// Exec runs ExecFunc; the process file must exist, as a runtime needs it.
func (r *Runtime) Exec(ctx context.Context, req oci.ExecRequest) (oci.ExecExit, error) {
	r.mu.Lock()
	err := r.call("exec", req.ID)
	run := r.ExecFunc
	r.mu.Unlock()
	if err != nil {
		return oci.ExecExit{}, err
	}
	if _, err := os.Stat(req.ProcessFile); err != nil {
		return oci.ExecExit{}, fmt.Errorf("fake exec: %w", err)
	}
	if run == nil {
		return oci.ExecExit{}, nil
	}
	return run(ctx, req)
}

var _ oci.Runtime = (*Runtime)(nil)
