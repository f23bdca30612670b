package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/crib-dev/crib/internal/procfs"
)

// RecoverReport says what Recover found, for the start-up log.
type RecoverReport struct {
	Ready    []string // pods whose namespaces survived
	NotReady []string // pods made NotReady (reboot, lost runroot, dead reaper)
	Removed  []string // half-made creates and orphaned state removed
	Errors   []error  // what could not be cleaned; the pods stay listed
}

// Recover reconciles records with what survived: a Ready pod whose
// namespace pins and reaper are alive stays Ready and keeps its label; any
// other becomes NotReady with its network released and its dead pins
// unmounted. Creates that crashed midway are undone, and run dirs, CNI
// attachments and leases that no record owns are removed.
func (m *Manager) Recover(ctx context.Context) (RecoverReport, error) {
	var r RecoverReport
	m.mu.Lock()
	all := make([]*Sandbox, 0, len(m.sandboxes))
	for _, sb := range m.sandboxes {
		all = append(all, sb)
	}
	m.mu.Unlock()
	for _, sb := range all {
		m.recoverOne(ctx, sb, &r)
	}
	m.removeOrphans(ctx, &r)
	m.killStrayReapers(&r)
	return r, errors.Join(r.Errors...)
}

// killStrayReapers ends reapers that no ready pod owns: those of creates
// killed before the record learnt the reaper's pid, and of pods removed
// since. A reaper holds nothing but its PID namespace.
func (m *Manager) killStrayReapers(r *RecoverReport) {
	for mark, pids := range markedReapers() {
		id, root, ok := strings.Cut(mark, "@")
		if !ok || root != m.opts.Root {
			continue // another crib's
		}
		sb := m.lookup(id)
		for _, pid := range pids {
			if sb != nil && sb.State == StateReady && sb.ReaperPID == pid {
				continue
			}
			start, err := procfs.StartTime(pid)
			if err != nil {
				continue // gone meanwhile
			}
			if err := killProcess(pid, start); err != nil {
				r.Errors = append(r.Errors, fmt.Errorf("killing the stray reaper %d of pod %s: %w", pid, id, err))
				continue
			}
			m.log.Info("killed a stray pod reaper", "pod", id, "pid", pid)
		}
	}
}

func (m *Manager) recoverOne(ctx context.Context, sb *Sandbox, r *RecoverReport) {
	unlock := m.lock(sb.ID)
	defer unlock()
	if sb.ProcessLabel != "" {
		m.labels.Reserve(sb.ProcessLabel)
	}
	switch {
	case sb.State == stateCreating:
		m.findInterruptedCgroup(sb)
		if err := m.removeLocked(ctx, sb); err != nil {
			r.Errors = append(r.Errors, fmt.Errorf("undoing the interrupted create of pod %s: %w", sb.ID, err))
			return
		}
		r.Removed = append(r.Removed, sb.ID)
	case sb.State == StateReady && m.alive(sb):
		r.Ready = append(r.Ready, sb.ID)
		if plan, err := m.plan(sb.Config); err == nil {
			if err := m.exposeHostPorts(ctx, sb, plan.ports); err != nil {
				r.Errors = append(r.Errors, err)
			}
		}
	default:
		if err := m.stopLocked(ctx, sb); err != nil {
			r.Errors = append(r.Errors, err)
		}
		if !m.alive(sb) {
			// Pins whose namespaces died (or mounts lost with the
			// runroot) are useless: keep only the files.
			if err := unmountUnder(filepath.Join(m.runDir(sb.ID), "ns")); err != nil {
				r.Errors = append(r.Errors, err)
			}
		}
		r.NotReady = append(r.NotReady, sb.ID)
	}
}

// findInterruptedCgroup fills in the pod cgroup of a create killed
// between making the cgroup and saving its path. The path is a function of
// the pod, and making an existing cgroup again changes nothing, so asking
// the manager for it finds the one to remove.
func (m *Manager) findInterruptedCgroup(sb *Sandbox) {
	if sb.CgroupParent != "" || sb.Config == nil {
		return
	}
	path, err := m.opts.Cgroups.CreatePod(sb.ID, sb.Config.GetLinux().GetCgroupParent(), nil, nil)
	if err != nil {
		m.log.Warn("finding the cgroup of an interrupted pod create", "pod", sb.ID, "err", err)
		return
	}
	sb.CgroupParent = path
}

// alive reports whether every namespace the pod owns is still pinned and
// its reaper still runs.
func (m *Manager) alive(sb *Sandbox) bool {
	for _, p := range []string{sb.NetNSPath, sb.IPCNSPath, sb.UTSNSPath, sb.UserNSPath} {
		if p != "" && !isNamespacePin(p) {
			return false
		}
	}
	return sb.ReaperPID == 0 || procfs.AliveSince(sb.ReaperPID, sb.ReaperStartTime)
}

// removeOrphans clears state no record owns: run dirs and record dirs of
// creates that crashed before their first save, CNI attachments and
// host-local leases of pods crib no longer knows.
func (m *Manager) removeOrphans(ctx context.Context, r *RecoverReport) {
	known := func(id string) bool { return m.lookup(id) != nil }
	for _, base := range []string{filepath.Join(m.opts.RunRoot, "sandboxes"), filepath.Join(m.opts.Root, "sandboxes")} {
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if !e.IsDir() || known(e.Name()) {
				continue
			}
			dir := filepath.Join(base, e.Name())
			err := unmountUnder(dir)
			if err == nil {
				err = os.RemoveAll(dir)
			}
			if err != nil {
				r.Errors = append(r.Errors, fmt.Errorf("removing orphaned %s: %w", dir, err))
				continue
			}
			r.Removed = append(r.Removed, dir)
		}
	}
	for _, id := range m.net.cachedPods() {
		if known(id) {
			continue
		}
		if err := m.net.detach(ctx, id, nil); err != nil {
			r.Errors = append(r.Errors, err)
			continue
		}
		r.Removed = append(r.Removed, "cni:"+id)
	}
	if list, err := m.net.config(); err == nil {
		for _, dir := range hostLocalDataDirs(list) {
			for _, lease := range leasesOf(dir, func(owner string) bool { return !known(owner) }) {
				if err := os.Remove(lease); err == nil {
					r.Removed = append(r.Removed, lease)
				}
			}
		}
	}
}
