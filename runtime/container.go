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
	})
	steptrace.Mark(ctx, "record")
	m.emit(c, EventStarted)
	return nil
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
func (m *Manager) update(e *entry, change func(*Container)) {
	m.mu.Lock()
	change(e.c)
	c := e.c.clone()
	m.mu.Unlock()
	if err := m.store.save(c); err != nil {
		m.log.Error("persisting a container record", "container", c.ID, "err", err)
	}
}

// updateUnsynced is update without the syncs (see store.saveUnsynced).
func (m *Manager) updateUnsynced(e *entry, change func(*Container)) {
	m.mu.Lock()
	change(e.c)
	c := e.c.clone()
	m.mu.Unlock()
	if err := m.store.saveUnsynced(c); err != nil {
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
