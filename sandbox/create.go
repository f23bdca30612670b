package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime/cgroups"
)

// creation carries one Create through its steps.
type creation struct {
	sb   *Sandbox
	plan *podPlan
}

// step is one reversible part of Create. undo must cope with a do that
// failed halfway.
type step struct {
	name string
	do   func(ctx context.Context, c *creation) error
	undo func(ctx context.Context, c *creation) error
}

// steps lists Create's steps in order; a failure undoes the steps before
// it (and its own partial work) in reverse.
func (m *Manager) steps() []step {
	return []step{
		{"record", m.stepRecord, m.undoRecord},
		{"selinux", m.stepLabels, m.undoLabels},
		{"namespaces", m.stepNamespaces, m.undoNamespaces},
		{"shm", m.stepShm, m.undoShm},
		{"reaper", m.stepReaper, m.undoReaper},
		{"cgroup", m.stepCgroup, m.undoCgroup},
		{"network", m.stepNetwork, m.undoNetwork},
		{"hostports", m.stepHostPorts, m.undoHostPorts},
		{"files", m.stepFiles, m.undoFiles},
		{"ready", m.stepReady, m.undoReady},
	}
}

// Create makes pod sandbox id from cfg and returns its record, Ready. On
// any failure everything done so far is undone.
func (m *Manager) Create(ctx context.Context, id string, cfg *runtimeapi.PodSandboxConfig, handler string) (*Sandbox, error) {
	if id == "" || cfg == nil || cfg.GetMetadata() == nil {
		return nil, fmt.Errorf("%w: a pod sandbox needs an id, a config and metadata", errdefs.ErrInvalidArgument)
	}
	if filepath.Base(id) != id || id == "." || id == ".." {
		return nil, fmt.Errorf("%w: pod sandbox id %q", errdefs.ErrInvalidArgument, id)
	}
	unlock := m.lock(id)
	defer unlock()
	if m.lookup(id) != nil {
		return nil, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrAlreadyExists)
	}
	p, err := m.plan(cfg)
	if err != nil {
		return nil, err
	}
	c := &creation{plan: p, sb: &Sandbox{
		ID: id, Config: cfg, RuntimeHandler: handler, CreatedAt: time.Now(), State: stateCreating,
	}}
	steps := m.steps()
	for i, s := range steps {
		err := m.runStep(ctx, s, c)
		if err == nil {
			continue
		}
		m.rollback(steps[:i+1], c)
		return nil, err
	}
	return c.sb.clone(), nil
}

func (m *Manager) runStep(ctx context.Context, s step, c *creation) error {
	if m.beforeStep != nil {
		if err := m.beforeStep(s.name); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.do(ctx, c)
}

// rollback undoes steps in reverse with a context of its own: the
// caller's may be what was cancelled.
func (m *Manager) rollback(done []step, c *creation) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := len(done) - 1; i >= 0; i-- {
		if err := done[i].undo(ctx, c); err != nil {
			m.log.Error("undoing a failed pod create", "pod", c.sb.ID, "step", done[i].name, "err", err)
		}
	}
}

// stepRecord writes a Creating record first, so that a crash in any later
// step leaves something Recover can find and undo.
func (m *Manager) stepRecord(_ context.Context, c *creation) error {
	for _, d := range []string{m.recordDir(c.sb.ID), m.runDir(c.sb.ID)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	return m.save(c.sb)
}

func (m *Manager) undoRecord(_ context.Context, c *creation) error {
	return errors.Join(m.removeRunDir(c.sb.ID), os.RemoveAll(m.recordDir(c.sb.ID)))
}

func (m *Manager) stepLabels(_ context.Context, c *creation) error {
	if err := m.allocateLabels(c.sb); err != nil {
		return err
	}
	return m.save(c.sb)
}

func (m *Manager) undoLabels(_ context.Context, c *creation) error {
	m.releaseLabels(c.sb)
	return nil
}

func (m *Manager) stepNamespaces(_ context.Context, c *creation) error {
	s := nsSetup{hostname: c.plan.hostname, sysctls: c.plan.sysctls}
	if c.plan.ownNet {
		s.kinds = append(s.kinds, nsNet)
	}
	if c.plan.ownIPC {
		s.kinds = append(s.kinds, nsIPC)
	}
	if c.plan.ownUTS {
		s.kinds = append(s.kinds, nsUTS)
	}
	dir := filepath.Join(m.runDir(c.sb.ID), "ns")
	if u := c.plan.userns; u != nil {
		pins, h, err := m.pinUserNamespaces(dir, s, u, c.plan.sharedPID, reaperMark(c.sb.ID, m.opts.Root))
		if err != nil {
			return err
		}
		c.sb.UserNSPath = pins["user"]
		c.sb.UIDMap, c.sb.GIDMap = u.uid, u.gid
		c.sb.NetNSPath, c.sb.IPCNSPath, c.sb.UTSNSPath = pins["net"], pins["ipc"], pins["uts"]
		if c.plan.sharedPID {
			// The holder is the pod's PID 1: the reaper step keeps it.
			c.sb.ReaperPID, c.sb.ReaperStartTime, c.sb.PIDNSPath = h.pid, h.start, procNS(h.pid, "pid")
		}
		return m.save(c.sb)
	}
	pins, err := pinNamespaces(dir, s)
	if err != nil {
		return err
	}
	c.sb.NetNSPath, c.sb.IPCNSPath, c.sb.UTSNSPath = pins["net"], pins["ipc"], pins["uts"]
	return m.save(c.sb)
}

func (m *Manager) undoNamespaces(_ context.Context, c *creation) error {
	var err error
	if c.plan.userns != nil && c.plan.sharedPID {
		// The holder outlived a failed step after this one, or this
		// one's own save.
		err = killProcess(c.sb.ReaperPID, c.sb.ReaperStartTime)
		c.sb.ReaperPID, c.sb.ReaperStartTime, c.sb.PIDNSPath = 0, 0, ""
	}
	err = errors.Join(err, unmountUnder(filepath.Join(m.runDir(c.sb.ID), "ns")))
	c.sb.NetNSPath, c.sb.IPCNSPath, c.sb.UTSNSPath, c.sb.UserNSPath = "", "", "", ""
	c.sb.UIDMap, c.sb.GIDMap = nil, nil
	return err
}

func (m *Manager) stepShm(_ context.Context, c *creation) error {
	if !c.plan.ownIPC {
		// A pod in crib's IPC namespace shares crib's /dev/shm.
		c.sb.ShmPath = "/dev/shm"
		return nil
	}
	path := filepath.Join(m.runDir(c.sb.ID), "shm")
	if err := mountShm(path, m.opts.ShmSize, c.sb.MountLabel); err != nil {
		return err
	}
	c.sb.ShmPath = path
	return nil
}

func (m *Manager) undoShm(_ context.Context, c *creation) error {
	c.sb.ShmPath = ""
	return unmountUnder(filepath.Join(m.runDir(c.sb.ID), "shm"))
}

func (m *Manager) stepReaper(_ context.Context, c *creation) error {
	if !c.plan.sharedPID || c.plan.userns != nil {
		return nil // a pod user namespace's holder is its reaper already
	}
	pid, start, err := startReaper(m.opts.CatatonitPath, reaperMark(c.sb.ID, m.opts.Root))
	if err != nil {
		return err
	}
	c.sb.ReaperPID, c.sb.ReaperStartTime = pid, start
	c.sb.PIDNSPath = "/proc/" + strconv.Itoa(pid) + "/ns/pid"
	return m.save(c.sb)
}

func (m *Manager) undoReaper(_ context.Context, c *creation) error {
	if c.plan.userns != nil {
		return nil // undoNamespaces ends the holder
	}
	err := killProcess(c.sb.ReaperPID, c.sb.ReaperStartTime)
	c.sb.ReaperPID, c.sb.ReaperStartTime, c.sb.PIDNSPath = 0, 0, ""
	return err
}

func (m *Manager) stepCgroup(_ context.Context, c *creation) error {
	l := c.sb.Config.GetLinux()
	path, err := m.opts.Cgroups.CreatePod(c.sb.ID, l.GetCgroupParent(), l.GetResources(), l.GetOverhead())
	if err != nil {
		return fmt.Errorf("creating the cgroup of pod %s: %w", c.sb.ID, err)
	}
	c.sb.CgroupParent = path
	if path == "" && (cgroups.AsksForLimits(l.GetResources()) || cgroups.AsksForLimits(l.GetOverhead())) {
		m.log.Warn("pod asked for resource limits, but crib has no delegated cgroup: it runs unconfined",
			"pod", c.sb.ID, "name", c.sb.Config.GetMetadata().GetName(), "namespace", c.sb.Config.GetMetadata().GetNamespace())
	}
	return m.save(c.sb)
}

func (m *Manager) undoCgroup(_ context.Context, c *creation) error {
	err := m.opts.Cgroups.RemovePod(c.sb.CgroupParent)
	c.sb.CgroupParent = ""
	return err
}

func (m *Manager) stepNetwork(ctx context.Context, c *creation) error {
	if !c.plan.ownNet {
		return nil
	}
	ip, more, err := m.net.attach(ctx, c.sb, c.plan.ports)
	if err != nil {
		return err
	}
	c.sb.IP, c.sb.AdditionalIPs = ip, more
	return m.save(c.sb)
}

func (m *Manager) undoNetwork(ctx context.Context, c *creation) error {
	if !c.plan.ownNet {
		return nil
	}
	err := m.net.detach(ctx, c.sb.ID, c.sb)
	c.sb.IP, c.sb.AdditionalIPs = "", nil
	return err
}

func (m *Manager) stepHostPorts(ctx context.Context, c *creation) error {
	return m.exposeHostPorts(ctx, c.sb, c.plan.ports)
}

// exposeHostPorts asks crib's parent to forward the pod's host ports; at
// create, and again at start-up for the pods that survived a restart (the
// old parent's listeners died with it).
func (m *Manager) exposeHostPorts(ctx context.Context, sb *Sandbox, planned []PortMapping) error {
	if m.opts.HostPorts == nil || len(planned) == 0 {
		return nil
	}
	ports := make([]PortMapping, len(planned))
	for i, p := range planned {
		p.PodIP = sb.IP
		ports[i] = p
	}
	if err := m.opts.HostPorts.Expose(ctx, sb.ID, ports); err != nil {
		return fmt.Errorf("forwarding the host ports of pod %s: %w", sb.ID, err)
	}
	return nil
}

func (m *Manager) undoHostPorts(ctx context.Context, c *creation) error {
	if m.opts.HostPorts == nil || len(c.plan.ports) == 0 {
		return nil
	}
	return m.opts.HostPorts.Unexpose(ctx, c.sb.ID)
}

func (m *Manager) stepFiles(_ context.Context, c *creation) error {
	return writePodFiles(m.runDir(c.sb.ID), c.sb, c.plan.hostname, c.plan.ownNet)
}

func (m *Manager) undoFiles(_ context.Context, c *creation) error {
	removePodFiles(c.sb)
	return nil
}

func (m *Manager) stepReady(_ context.Context, c *creation) error {
	c.sb.State = StateReady
	if err := m.save(c.sb); err != nil {
		c.sb.State = stateCreating
		return err
	}
	m.mu.Lock()
	m.sandboxes[c.sb.ID] = c.sb
	m.ids.Add(c.sb.ID)
	m.mu.Unlock()
	return nil
}

func (m *Manager) undoReady(_ context.Context, c *creation) error {
	m.forget(c.sb.ID)
	return nil
}
