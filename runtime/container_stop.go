package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/pidfd"
	"github.com/crib-dev/crib/internal/steptrace"
	"github.com/crib-dev/crib/runtime/oci"
)

// killGrace bounds the wait for a SIGKILLed container to be reported dead;
// beyond it something is wedged (a process in D state, a dead monitor).
const killGrace = 10 * time.Second

// Stop sends the container's stop signal (SIGTERM unless the image named
// another), waits up to timeout, then SIGKILLs it; timeout 0 kills at once.
// Stopping an exited container succeeds; an unknown one is ErrNotFound,
// which the cri layer turns into success.
func (m *Manager) Stop(ctx context.Context, id string, timeout time.Duration) error {
	e, err := m.lookup(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	return m.stop(ctx, e, timeout)
}

// stop ends the container's init, then every other process of the
// container (census.go): an init that exited, by itself or killed, may
// leave children behind when the container shares the node's PID
// namespace and has no cgroup to find them by.
func (m *Manager) stop(ctx context.Context, e *entry, timeout time.Duration) error {
	if err := m.stopInit(ctx, e, timeout); err != nil {
		return err
	}
	return m.endProcesses(ctx, e.c.ID)
}

func (m *Manager) stopInit(ctx context.Context, e *entry, timeout time.Duration) error {
	m.handleExit(e.c.ID)
	c := m.snapshot(e)
	// A container never started has no process: it stays created (as
	// containerd leaves it), and Remove just deletes its files.
	if c.State == StateExited || !c.launched() {
		return nil
	}
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return err
	}
	// A created container's init is runc's own, waiting to exec the
	// command: the image's stop signal means nothing to it.
	if timeout > 0 && c.State == StateRunning {
		sig, _ := parseSignal(c.StopSignal)
		if err := rt.Kill(ctx, c.ID, sig, false); err != nil {
			return fmt.Errorf("stopping container %s: %w", c.ID, err)
		}
		if m.waitExited(ctx, e, timeout) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopping container %s: %w", c.ID, ctx.Err())
		}
		m.log.Info("container ignored its stop signal; killing it", "container", c.ID, "timeout", timeout)
	}
	return m.kill(ctx, e, rt)
}

// kill SIGKILLs every process of the container and waits for its exit.
func (m *Manager) kill(ctx context.Context, e *entry, rt oci.Runtime) error {
	c := m.snapshot(e)
	// --all needs the cgroup to find the processes; without one, the init
	// is all the runtime knows (its PID namespace dies with it when it is
	// own), and the census ends the rest.
	if err := rt.Kill(ctx, c.ID, unix.SIGKILL, c.CgroupsPath != ""); err != nil {
		return fmt.Errorf("killing container %s: %w", c.ID, err)
	}
	if m.waitExited(ctx, e, killGrace) {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("killing container %s: %w", c.ID, ctx.Err())
	}
	return fmt.Errorf("%w: container %s did not exit %s after SIGKILL", errdefs.ErrUnavailable, c.ID, killGrace)
}

// waitExited waits up to d for the container to be recorded exited. It
// also watches the monitor: a monitor that died leaves no exit file, and
// then the runtime's own state decides.
func (m *Manager) waitExited(ctx context.Context, e *entry, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-e.exited:
			return true
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
			m.handleExit(e.c.ID)
			m.checkMonitor(ctx, e)
		}
	}
}

// checkMonitor records the container as exited with an unknown code when
// its monitor is gone without writing an exit file and the runtime says
// the container is not running any more.
func (m *Manager) checkMonitor(ctx context.Context, e *entry) {
	c := m.snapshot(e)
	if c.State == StateExited {
		return
	}
	rt, err := m.runtimeFor(c.Handler)
	if err != nil || rt.Monitoring(c.MonitorPid, c.ID) {
		return
	}
	if _, err := os.Stat(m.files(c.ID).exitFile); err == nil {
		m.handleExit(c.ID)
		return
	}
	st, err := rt.State(ctx, c.ID)
	if err == nil && st.Live() && processAlive(st.Pid) {
		return
	}
	m.markMonitorGone(e, "the container's monitor (conmon) exited without recording the container's exit code")
}

// markMonitorGone records an exit nobody saw.
func (m *Manager) markMonitorGone(e *entry, message string) {
	changed := false
	m.update(e, func(c *Container) {
		if c.State == StateExited {
			return
		}
		changed = true
		c.State, c.ExitCode, c.FinishedAt = StateExited, exitCodeUnknown, time.Now()
		c.Reason, c.Message = ReasonHostRestarted, message
	})
	m.markDone(e)
	if changed {
		m.emit(m.snapshot(e), EventStopped)
	}
}

// Remove stops the container if it runs, deletes the runtime's state, the
// bundle, the exit file and the record. Removing an unknown container
// succeeds.
func (m *Manager) Remove(ctx context.Context, id string) error {
	reclaim, err := m.Release(ctx, id)
	if err != nil || reclaim == nil {
		return err
	}
	return reclaim(ctx)
}

// Release is Remove's first half: it stops the container, waits until no
// process of it is left (its monitor included), deletes its record and
// forgets it, so its id is unknown from then on. The runtime's state and
// the bundle are left for the returned reclaim, which the
// caller runs now or later (nil: an unknown container, nothing to
// reclaim). A crash before the reclaim leaves them without a record,
// which Recover's sweep removes.
func (m *Manager) Release(ctx context.Context, id string) (reclaim func(context.Context) error, err error) {
	e, err := m.lookup(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil
	}
	e.op.Lock()
	defer e.op.Unlock()
	if !m.known(e) {
		return nil, nil // a concurrent Release got there first
	}
	if err := m.stop(ctx, e, 0); err != nil {
		return nil, err
	}
	steptrace.Mark(ctx, "stop")
	c := m.snapshot(e)
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return nil, err
	}
	m.awaitMonitorExit(ctx, rt, c)
	steptrace.Mark(ctx, "monitor exit")
	// Only the record file goes now: without it the container is unknown,
	// after a crash too. Its directory, the exit file and the attach link
	// (nothing reads them for an unknown id) go with the reclaim, or with
	// Recover's sweep after a crash; three unlinks fewer on the call.
	if err := m.store.removeRecord(id); err != nil {
		return nil, err
	}
	steptrace.Mark(ctx, "record")
	m.mu.Lock()
	delete(m.containers, id)
	m.ids.Remove(id)
	m.mu.Unlock()
	m.cpu.Forget(id)
	m.emit(c, EventDeleted)
	return func(ctx context.Context) error {
		if err := m.cleanup(ctx, id, rt); err != nil {
			return err
		}
		return m.store.remove(id) // the record's directory
	}, nil
}

// known reports whether e is still the container's entry.
func (m *Manager) known(e *entry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.containers[e.c.ID] == e
}

// monitorExitGrace bounds how long Remove waits for a monitor that has
// recorded its container's exit to exit itself.
const monitorExitGrace = 2 * time.Second

// awaitMonitorExit waits until the container's conmon is gone: it writes
// the exit file first and exits a moment later, and no process of a
// container may outlive its removal. One still there after the grace is
// killed.
//
// The wait sleeps on a pidfd of the monitor, opened and then checked to
// still be that conmon, so it returns the moment conmon exits (a 5 ms
// poll made every removal that followed a stop by a moment wait 5–10 ms
// more); kernels without pidfds poll.
func (m *Manager) awaitMonitorExit(ctx context.Context, rt oci.Runtime, c *Container) {
	deadline := time.Now().Add(monitorExitGrace)
	if !rt.Monitoring(c.MonitorPid, c.ID) {
		return
	}
	if f, err := pidfd.Open(c.MonitorPid); err == nil {
		if rt.Monitoring(c.MonitorPid, c.ID) {
			_ = pidfd.Await(ctx, f, deadline)
		}
		f.Close()
	}
	for rt.Monitoring(c.MonitorPid, c.ID) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			rt.KillMonitor(c.MonitorPid, c.ID)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cleanup removes what a container left in the runroot (bundle, exit
// file, attach link) and the runtime.
func (m *Manager) cleanup(ctx context.Context, id string, rt oci.Runtime) error {
	if err := rt.Delete(ctx, id); err != nil {
		return fmt.Errorf("deleting container %s from %s: %w", id, rt.Name(), err)
	}
	f := m.files(id)
	if err := removeBundle(f.bundle, m.usernsRoot); err != nil {
		return fmt.Errorf("removing the bundle of container %s: %w", id, err)
	}
	if err := f.removeOutside(); err != nil {
		return fmt.Errorf("removing the exit file and attach link of container %s: %w", id, err)
	}
	return nil
}

// parseSignal reads a STOPSIGNAL: a name with or without SIG, or a number;
// "" is SIGTERM.
func parseSignal(s string) (unix.Signal, error) {
	if s == "" {
		return unix.SIGTERM, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("%w: stop signal %q", errdefs.ErrInvalidArgument, s)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMIN+"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && 34+n <= 64 {
			return unix.Signal(34 + n), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown stop signal %q", errdefs.ErrInvalidArgument, s)
}
