package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/steptrace"
	"github.com/crib-dev/crib/runtime/oci"
)

// lookup returns the entry of a container with a record.
func (m *Manager) lookup(id string) (*entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.containers[id]
	if !ok || e.c == nil {
		return nil, fmt.Errorf("%w: container %s", errdefs.ErrNotFound, id)
	}
	return e, nil
}

// Get returns a copy of the container's record.
func (m *Manager) Get(id string) (*Container, error) {
	e, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.c.clone(), nil
}

// List returns copies of every record, oldest first.
func (m *Manager) List() []*Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Container, 0, len(m.containers))
	for _, e := range m.containers {
		if e.c != nil {
			out = append(out, e.c.clone())
		}
	}
	slices.SortFunc(out, func(a, b *Container) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// Status refreshes the state from the exit file (in case an inotify event
// is still on its way) and returns the record.
func (m *Manager) Status(id string) (*Container, error) {
	if _, err := m.lookup(id); err != nil {
		return nil, err
	}
	m.handleExit(id)
	return m.Get(id)
}

// Start runs the created container's command.
func (m *Manager) Start(ctx context.Context, id string) error {
	e, err := m.lookup(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	c := m.snapshot(e)
	if c.State != StateCreated {
		return fmt.Errorf("%w: container %s is %s, not created", errdefs.ErrFailedPrecondition, id, c.State)
	}
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return err
	}
	if !c.launched() {
		if err := m.launch(ctx, e, rt); err != nil {
			m.failLaunch(e, err)
			return fmt.Errorf("starting container %s: %w", id, err)
		}
	}
	at := time.Now()
	if err := rt.Start(ctx, id); err != nil {
		m.failStart(ctx, e, rt, err)
		return fmt.Errorf("starting container %s: %w", id, err)
	}
	steptrace.Mark(ctx, "oci start")
	// Unsynced: after a power loss the container is lost whether its
	// record says created or running (Recover treats both alike), and a
	// crash of crib keeps the page cache (and finishStart covers a record
	// still saying created). The sync cost milliseconds of every start.
	m.updateUnsynced(e, func(c *Container) {
		c.StartedAt = at
		if c.State == StateCreated { // it may have exited already
			c.State = StateRunning
		}
		c.orderTimes()
	})
	steptrace.Mark(ctx, "record")
	m.emit(c, EventStarted)
	return nil
}

// orderTimes keeps FinishedAt from preceding StartedAt. FinishedAt is the
// exit file's mtime, from the kernel's coarse clock (up to a tick, 4 ms at
// HZ=250, behind time.Now); a command that exits within a tick of its
// start (the start is one write to crun's exec fifo) would otherwise seem
// to finish before it started.
func (c *Container) orderTimes() {
	if !c.StartedAt.IsZero() && !c.FinishedAt.IsZero() && c.FinishedAt.Before(c.StartedAt) {
		c.FinishedAt = c.StartedAt
	}
}

// launched: the monitor and the runtime's create have run (Start's first
// half); a container that was only created has no process at all.
func (c *Container) launched() bool { return c.Pid > 0 }

// launch has the monitor create the container (the runtime's create:
// namespaces and init exist, the command has not run) and takes a census
// of it. The pids are kept in memory only: Start's record update saves
// them, and Recover finds them in the bundle when crib died before it.
func (m *Manager) launch(ctx context.Context, e *entry, rt oci.Runtime) error {
	c := m.snapshot(e)
	f := m.files(c.ID)
	// Again: a symlink planted in the log directory since the create
	// would have the monitor write elsewhere.
	if err := checkLogInside(c.LogDirectory, c.LogPath); err != nil {
		return err
	}
	started, err := rt.Create(ctx, oci.CreateRequest{ID: c.ID, Name: c.Name, Bundle: f.bundle,
		PidFile: f.pidFile, MonitorPidFile: f.monitorPid, LogPath: c.LogPath,
		TTY: c.Config.GetTty(), Stdin: c.Config.GetStdin(), StdinOnce: c.Config.GetStdinOnce()})
	steptrace.Mark(ctx, "oci create")
	if err != nil {
		m.undoLaunch(c.ID, rt, oci.ReadPidFile(f.monitorPid))
		return err
	}
	if err := recordCensus(f.bundle, started.Pid); err != nil {
		m.undoLaunch(c.ID, rt, started.MonitorPid)
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	steptrace.Mark(ctx, "census")
	m.mu.Lock()
	e.c.Pid, e.c.MonitorPid = started.Pid, started.MonitorPid
	m.mu.Unlock()
	return nil
}

// undoLaunch ends what a failed launch made: the monitor, the init, the
// runtime's state (conmon may have died mid-create and left it).
func (m *Manager) undoLaunch(id string, rt oci.Runtime, monitorPid int) {
	ctx := context.Background()
	rt.KillMonitor(monitorPid, id)
	if err := m.endProcesses(ctx, id); err != nil {
		m.log.Warn("undoing a launch: ending the container's processes", "container", id, "err", err)
	}
	if err := rt.Delete(ctx, id); err != nil {
		m.log.Warn("undoing a launch: deleting the runtime state", "container", id, "err", err)
	}
}

// failLaunch records a start that failed before the runtime's create
// finished: nothing of the container runs, it shows as exited.
func (m *Manager) failLaunch(e *entry, cause error) {
	m.update(e, func(c *Container) {
		c.Pid, c.MonitorPid = 0, 0
		c.State, c.FinishedAt, c.ExitCode = StateExited, time.Now(), exitCodeUnknown
		c.Reason, c.Message = ReasonStartError, cause.Error()
	})
	m.markDone(e)
	m.emit(m.snapshot(e), EventStopped)
}

// failStart kills a container whose start failed and records why, so it
// shows as exited instead of staying created forever.
func (m *Manager) failStart(ctx context.Context, e *entry, rt oci.Runtime, cause error) {
	_ = rt.Kill(ctx, e.c.ID, unix.SIGKILL, false)
	m.waitExited(ctx, e, 5*time.Second)
	m.update(e, func(c *Container) {
		if c.State != StateExited {
			c.State, c.FinishedAt, c.ExitCode = StateExited, time.Now(), exitCodeUnknown
		}
		c.Reason, c.Message = ReasonStartError, cause.Error()
	})
	m.markDone(e)
}

// snapshot copies the record under the lock.
func (m *Manager) snapshot(e *entry) *Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.c.clone()
}

// update changes the record and persists it.
func (m *Manager) update(e *entry, change func(*Container)) { m.persist(e, change, m.store.save) }

// updateUnsynced is update without the syncs (see store.saveUnsynced).
func (m *Manager) updateUnsynced(e *entry, change func(*Container)) {
	m.persist(e, change, m.store.saveUnsynced)
}

func (m *Manager) persist(e *entry, change func(*Container), save func(*Container) error) {
	m.mu.Lock()
	change(e.c)
	c := e.c.clone()
	m.mu.Unlock()
	if err := save(c); err != nil {
		m.log.Error("persisting a container record", "container", c.ID, "err", err)
	}
}

// markDone wakes whoever waits for the container to exit.
func (m *Manager) markDone(e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-e.exited:
	default:
		close(e.exited)
	}
}

// handleExit records the exit conmon reported in the exit file; it is
// called by the exit watcher and by anyone who wants a fresh state, and
// does nothing when there is no exit file or the container is already
// recorded as exited.
func (m *Manager) handleExit(id string) {
	m.mu.Lock()
	e, ok := m.containers[id]
	if !ok || e.c == nil || e.c.State == StateExited {
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	f := m.files(id)
	code, at, err := readExitFile(f.exitFile)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.log.Warn("reading an exit file", "container", id, "err", err)
		}
		return
	}
	reason := ReasonCompleted
	if code != 0 {
		reason = ReasonError
	}
	c := m.snapshot(e)
	if m.oomKilled(c, f) {
		reason = ReasonOOMKilled
	}
	changed := false
	m.update(e, func(c *Container) {
		if c.State == StateExited {
			return
		}
		changed = true
		c.State, c.ExitCode, c.FinishedAt, c.Reason = StateExited, code, at, reason
		c.orderTimes()
	})
	m.markDone(e)
	if changed {
		m.emit(c, EventStopped)
	}
}

// oomKilled: conmon's oom file, or the cgroup's OOM kill counter (conmon
// misses v1 events when the cgroup appeared late, and never sees them
// without --persist-dir).
func (m *Manager) oomKilled(c *Container, f monitorFiles) bool {
	if _, err := os.Stat(filepath.Join(f.bundle, "oom")); err == nil {
		return true
	}
	if m.cgroups == nil || c.CgroupsPath == "" {
		return false
	}
	st, err := m.cgroups.Stats(c.CgroupsPath)
	return err == nil && st != nil && st.OOMKills > 0
}
