package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/runtime/oci"
)

// RecoverReport says what Recover found.
type RecoverReport struct {
	// Reattached containers still have their monitor; crib watches them
	// again.
	Reattached []string
	// Exited containers exited while crib was away; their exit code is
	// the monitor's.
	Exited []string
	// Lost containers had no monitor and no exit file (the host rebooted
	// or the monitor was killed): recorded as exited with code 255 and
	// reason HostRestarted, and killed if they still ran.
	Lost []string
	// Unstarted containers were created and never started (no monitor,
	// no runtime state): they stay created and startable.
	Unstarted []string
	// Cleaned are leftovers with no record (a crash mid-create): bundles,
	// monitors, runtime state and exit files, now removed.
	Cleaned []string
}

const lostMessage = "the container's monitor is gone and left no exit code: the host restarted or the monitor was killed"

// Recover reconciles the records with the live system after crib starts:
// it re-attaches to containers whose monitor lives, records the exits it
// missed, marks containers whose monitor vanished, and removes what a
// crash left half made. Nothing is left for a human to clean up.
func (m *Manager) Recover(ctx context.Context) (RecoverReport, error) {
	var rep RecoverReport
	m.mu.Lock()
	entries := make([]*entry, 0, len(m.containers))
	for _, e := range m.containers {
		if e.c != nil {
			entries = append(entries, e)
		}
	}
	m.mu.Unlock()
	known := map[string]bool{}
	for _, e := range entries {
		known[e.c.ID] = true
		if err := m.recoverOne(ctx, e, &rep); err != nil {
			return rep, err
		}
	}
	m.cleanOrphans(ctx, known, &rep)
	return rep, nil
}

func (m *Manager) recoverOne(ctx context.Context, e *entry, rep *RecoverReport) error {
	e.op.Lock()
	defer e.op.Unlock()
	c := m.snapshot(e)
	if c.State == StateExited {
		return nil
	}
	f := m.files(c.ID)
	if _, err := os.Stat(f.exitFile); err == nil {
		m.handleExit(c.ID)
		rep.Exited = append(rep.Exited, c.ID)
		return nil
	}
	pid := c.MonitorPid
	if pid == 0 {
		pid = oci.ReadPidFile(f.monitorPid)
	}
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return err
	}
	if rt.Monitoring(pid, c.ID) {
		if c.State == StateCreated {
			m.finishStart(ctx, e, pid)
		}
		rep.Reattached = append(rep.Reattached, c.ID)
		return nil
	}
	if m.keepUnstarted(ctx, c, pid, rt) {
		rep.Unstarted = append(rep.Unstarted, c.ID)
		return nil
	}
	// The exit file may have landed between the two checks.
	if _, err := os.Stat(f.exitFile); err == nil {
		m.handleExit(c.ID)
		rep.Exited = append(rep.Exited, c.ID)
		return nil
	}
	// Unmonitored, a container that still runs has no log and no exit
	// code: kill it so the kubelet restarts it properly.
	_ = rt.Kill(ctx, c.ID, unix.SIGKILL, c.CgroupsPath != "")
	if err := m.endProcesses(ctx, c.ID); err != nil {
		m.log.Warn("ending a lost container's processes", "container", c.ID, "err", err)
	}
	m.markMonitorGone(e, lostMessage)
	if err := m.cleanup(ctx, c.ID, rt); err != nil {
		m.log.Warn("cleaning up a lost container", "container", c.ID, "err", err)
	}
	rep.Lost = append(rep.Lost, c.ID)
	return nil
}

// finishStart records a start crib died in the middle of: the monitor
// lives, but the record may lack its pids (saved at the end of Start) and
// still say created although the runtime started the container. When
// exactly it started is unknown; it was no later than now. A container
// the runtime holds created stays so, launched: Start then only starts it.
func (m *Manager) finishStart(ctx context.Context, e *entry, monitorPid int) {
	c := m.snapshot(e)
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return
	}
	st, err := rt.State(ctx, c.ID)
	if err != nil {
		return
	}
	pid := c.Pid
	if pid == 0 {
		pid = oci.ReadPidFile(m.files(c.ID).pidFile)
	}
	if pid == 0 {
		pid = st.Pid
	}
	m.update(e, func(c *Container) {
		c.Pid, c.MonitorPid = pid, monitorPid
		if c.State == StateCreated && st.Status == "running" {
			c.State, c.StartedAt = StateRunning, time.Now()
		}
	})
}

// keepUnstarted keeps created a container Start never launched: no
// monitor, no runtime pid, and its bundle still there (a reboot empties
// the runroot, and a container whose runroot is gone is lost: its
// writable layer is volatile). A Start that died before its monitor
// wrote a pid file may have left runtime state: deleting it (nothing when
// there is none) makes the container startable again.
func (m *Manager) keepUnstarted(ctx context.Context, c *Container, monitorPid int, rt oci.Runtime) bool {
	f := m.files(c.ID)
	if c.State != StateCreated || c.launched() || monitorPid > 0 || oci.ReadPidFile(f.pidFile) > 0 {
		return false
	}
	if _, err := os.Stat(filepath.Join(f.bundle, "config.json")); err != nil {
		return false
	}
	if err := rt.Delete(ctx, c.ID); err != nil {
		m.log.Warn("deleting the runtime state of a container never started", "container", c.ID, "err", err)
		return false
	}
	if err := f.removeOutside(); err != nil {
		m.log.Warn("removing the exit file of a container never started", "container", c.ID, "err", err)
	}
	return true
}

// cleanOrphans removes bundles, runtime state, exit files and attach
// links of ids that have no record.
func (m *Manager) cleanOrphans(ctx context.Context, known map[string]bool, rep *RecoverReport) {
	orphans := map[string]bool{}
	bundles, _ := os.ReadDir(filepath.Join(m.runRoot, "containers"))
	for _, b := range bundles {
		orphans[b.Name()] = true
	}
	for _, dir := range []string{m.exitDir, m.attachDir} {
		entries, _ := os.ReadDir(dir)
		for _, x := range entries {
			orphans[x.Name()] = true
		}
	}
	for _, h := range m.handlers {
		if !m.ownsRoot(h) {
			continue
		}
		states, _ := os.ReadDir(h.Root)
		for _, s := range states {
			if s.IsDir() {
				orphans[s.Name()] = true
			}
		}
	}
	// A record dir without its record: a create killed before its first
	// save, or a removal killed between the record and its directory.
	records, _ := os.ReadDir(m.store.dir)
	for _, r := range records {
		if _, err := os.Stat(m.store.path(r.Name())); r.IsDir() && errors.Is(err, os.ErrNotExist) {
			orphans[r.Name()] = true
		}
	}
	for id := range orphans {
		if known[id] {
			continue
		}
		if _, err := os.Stat(m.store.path(id)); errors.Is(err, os.ErrNotExist) {
			if err := m.store.remove(id); err != nil {
				m.log.Warn("removing an empty record dir", "container", id, "err", err)
			}
		}
		f := m.files(id)
		m.runtimes[m.defHandler].KillMonitor(oci.ReadPidFile(f.monitorPid), id)
		// A half-made or half-removed container may still have processes.
		if err := m.endProcesses(ctx, id); err != nil {
			m.log.Warn("ending a leftover container's processes", "container", id, "err", err)
		}
		for name, rt := range m.runtimes {
			if err := rt.Delete(ctx, id); err != nil {
				m.log.Warn("deleting leftover runtime state", "container", id, "runtime", name, "err", err)
			}
		}
		if err := removeBundle(f.bundle, m.usernsRoot); err != nil {
			m.log.Warn("removing a leftover bundle", "container", id, "err", err)
		}
		if err := f.removeOutside(); err != nil {
			m.log.Warn("removing a leftover exit file or attach link", "container", id, "err", err)
		}
		rep.Cleaned = append(rep.Cleaned, id)
	}
}
