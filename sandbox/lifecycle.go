package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/steptrace"
)

// Stop releases what a stopped pod no longer needs: its network (CNI DEL,
// which frees its address and port rules), its host ports and its reaper.
// The namespaces, files and cgroup stay until Remove. Stopping an unknown
// or stopped pod succeeds, and a Stop cut short can simply be repeated.
func (m *Manager) Stop(ctx context.Context, id string) error {
	unlock := m.lock(id)
	defer unlock()
	sb := m.lookup(id)
	if sb == nil {
		return nil
	}
	return m.stopLocked(ctx, sb)
}

func (m *Manager) stopLocked(ctx context.Context, sb *Sandbox) error {
	if sb.Stopped {
		return nil
	}
	var errs []error
	if sb.NetNSPath != "" || sb.NetworkName != "" {
		errs = append(errs, m.net.detach(ctx, sb.ID, sb))
		steptrace.Mark(ctx, "network")
	}
	if m.opts.HostPorts != nil {
		if err := m.opts.HostPorts.Unexpose(ctx, sb.ID); err != nil {
			errs = append(errs, fmt.Errorf("removing the host ports of pod %s: %w", sb.ID, err))
		}
		steptrace.Mark(ctx, "host ports")
	}
	if err := killProcess(sb.ReaperPID, sb.ReaperStartTime); err != nil {
		errs = append(errs, fmt.Errorf("stopping the reaper of pod %s: %w", sb.ID, err))
	}
	steptrace.Mark(ctx, "reaper")
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.update(sb, func(sb *Sandbox) {
		if sb.State != stateCreating {
			sb.State = StateNotReady
		}
		sb.IP, sb.AdditionalIPs = "", nil
		sb.Stopped = true
	})
	return m.save(sb)
}

// Remove stops the pod if needed and deletes everything it owns:
// namespace pins, shm, files, cgroup, label and record. Removing an
// unknown pod succeeds; a Remove cut short can be repeated, since the
// record goes last.
func (m *Manager) Remove(ctx context.Context, id string) error {
	unlock := m.lock(id)
	defer unlock()
	sb := m.lookup(id)
	if sb == nil {
		// No record: still clear a run dir a crashed create may have left.
		return m.removeRunDir(id)
	}
	return m.removeLocked(ctx, sb)
}

func (m *Manager) removeLocked(ctx context.Context, sb *Sandbox) error {
	if err := m.stopLocked(ctx, sb); err != nil {
		return err
	}
	if err := m.removeRunDir(sb.ID); err != nil {
		return err
	}
	steptrace.Mark(ctx, "run dir")
	if err := m.opts.Cgroups.RemovePod(sb.CgroupParent); err != nil {
		return fmt.Errorf("%w: removing the cgroup of pod %s (are its containers gone?): %v", errdefs.ErrFailedPrecondition, sb.ID, err)
	}
	steptrace.Mark(ctx, "cgroup")
	m.releaseLabels(sb)
	if err := os.RemoveAll(m.recordDir(sb.ID)); err != nil {
		return fmt.Errorf("removing the record of pod %s: %w", sb.ID, err)
	}
	m.forget(sb.ID)
	return nil
}

// removeRunDir unmounts whatever is mounted below the pod's run dir (pins,
// shm) and deletes it.
func (m *Manager) removeRunDir(id string) error {
	dir := m.runDir(id)
	if err := unmountUnder(dir); err != nil {
		return fmt.Errorf("unmounting the runtime state of pod %s: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}
