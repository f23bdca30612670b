package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idindex"
	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/internal/procfs"
	"github.com/crib-dev/crib/internal/record"
	"github.com/crib-dev/crib/runtime/cgroups"
)

// Options configures a Manager.
type Options struct {
	// Root holds the records (Root/sandboxes/<id>/) and CNI state that must
	// survive a reboot to be released (host-local leases, the CNI cache).
	// RunRoot holds runtime state: namespace pins, shm, generated files.
	Root, RunRoot string
	// Rootless means crib runs in its own user namespace: "host"
	// namespaces are crib's, and host ports need the parent's forwarding.
	Rootless bool

	CNIConfDir    string
	CNIPluginDirs []string
	// CatatonitPath is the PID-namespace reaper; "" means search PATH.
	CatatonitPath string
	// Cgroups makes pod cgroups; nil means cgroups.None().
	Cgroups cgroups.Manager
	// HostPorts forwards host ports from the host's network namespace;
	// nil when rootful (portmap in the host netns suffices).
	HostPorts HostPorts
	// UnprivilegedPortStart is the host's
	// net.ipv4.ip_unprivileged_port_start: in rootless mode lower host
	// ports are refused.
	UnprivilegedPortStart int
	// ShmSize is the size limit of a pod's /dev/shm; 0 means 64 MiB.
	ShmSize int64
	// Labels allocates SELinux labels; nil means go-selinux, a no-op where
	// SELinux is off.
	Labels LabelAllocator
	Logger *slog.Logger
}

// HostPorts forwards a pod's host ports from the host's network namespace
// into crib's (rootless mode, done by crib's parent). Both calls must be
// idempotent: Unexpose of a pod with nothing exposed succeeds.
type HostPorts interface {
	Expose(ctx context.Context, podID string, ports []PortMapping) error
	Unexpose(ctx context.Context, podID string) error
}

// PortMapping is one host port of a pod. PodIP is "" for a pod on crib's
// own (host) network: the container listens in crib's namespace itself.
type PortMapping struct {
	Protocol      string // tcp or udp
	HostIP        string
	HostPort      int
	PodIP         string
	ContainerPort int
}

const defaultShmSize = 64 << 20

// Manager owns the pod sandboxes of one crib.
type Manager struct {
	opts   Options
	log    *slog.Logger
	net    *network
	labels LabelAllocator

	mu        sync.Mutex
	sandboxes map[string]*Sandbox // Ready and NotReady pods
	ids       idindex.Index       // the keys of sandboxes, for Resolve
	busy      map[string]*sync.Mutex
	cpu       procfs.CPUSampler // usage_nano_cores of each pod

	// beforeStep, when set (tests only), runs before each Create step and
	// may fail it, so every rollback path can be exercised.
	beforeStep func(step string) error
	// idMaps, when set (tests only), stands for crib's own
	// /proc/self/uid_map and gid_map.
	idMaps func() (uid, gid idmap.Map, err error)
}

// New prepares the directories, writes the default CNI conflist when the
// conf dir holds none, and loads the records. It does not touch running
// pods: call Recover for that.
func New(opts Options) (*Manager, error) {
	if opts.Root == "" || opts.RunRoot == "" {
		return nil, fmt.Errorf("%w: sandbox manager needs Root and RunRoot", errdefs.ErrInvalidArgument)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Cgroups == nil {
		opts.Cgroups = cgroups.None()
	}
	if opts.ShmSize == 0 {
		opts.ShmSize = defaultShmSize
	}
	if opts.Labels == nil {
		opts.Labels = goSELinux{}
	}
	for _, d := range []string{filepath.Join(opts.Root, "sandboxes"), filepath.Join(opts.RunRoot, "sandboxes")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	net, err := newNetwork(opts)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		opts: opts, log: opts.Logger, net: net, labels: opts.Labels,
		sandboxes: map[string]*Sandbox{}, busy: map[string]*sync.Mutex{},
	}
	if err := m.loadRecords(); err != nil {
		return nil, err
	}
	return m, nil
}

// loadRecords reads every record; those of creates that crashed midway
// stay in the map as Creating until Recover finishes them off.
func (m *Manager) loadRecords() error {
	dir := filepath.Join(m.opts.Root, "sandboxes")
	errs, err := record.LoadDir(dir, recordFile, func(_ string, data []byte) error {
		sb, err := decodeRecord(data)
		if err == nil {
			m.sandboxes[sb.ID] = sb
			m.ids.Add(sb.ID)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	for _, err := range errs {
		m.log.Warn("skipping an unreadable pod record", "err", err)
	}
	return nil
}

// lock serialises the operations on one pod; different pods proceed in
// parallel.
func (m *Manager) lock(id string) func() {
	m.mu.Lock()
	l, ok := m.busy[id]
	if !ok {
		l = &sync.Mutex{}
		m.busy[id] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (m *Manager) lookup(id string) *Sandbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sandboxes[id]
}

func (m *Manager) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sandboxes, id)
	m.ids.Remove(id)
	m.cpu.Forget(id)
}

// Get returns a copy of the record of pod id.
func (m *Manager) Get(id string) (*Sandbox, error) {
	sb := m.lookup(id)
	if sb == nil || sb.State == stateCreating {
		return nil, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return sb.clone(), nil
}

// List returns copies of every created pod's record, oldest first.
func (m *Manager) List() []*Sandbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Sandbox, 0, len(m.sandboxes))
	for _, sb := range m.sandboxes {
		if sb.State != stateCreating {
			out = append(out, sb.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// NetworkReady reports whether pods can be networked: a CNI network is
// configured and its plugins are installed.
func (m *Manager) NetworkReady() (bool, string) {
	_, err := m.net.config()
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}

// setState updates a record's state under the map lock (readers copy it).
func (m *Manager) update(sb *Sandbox, fn func(*Sandbox)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(sb)
}
