package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idindex"
	"github.com/crib-dev/crib/internal/procfs"
	"github.com/crib-dev/crib/runtime/cgroups"
	"github.com/crib-dev/crib/runtime/oci"
)

// Options configures a Manager.
type Options struct {
	// Root holds the durable container records (Root/containers/<id>).
	Root string
	// RunRoot holds bundles, exit files, attach sockets and the runtimes'
	// state; it should be a tmpfs, so that a reboot empties it.
	RunRoot string
	// Handlers are the runtime handlers; DefaultHandler names the one a
	// request without a handler gets ("" = the first).
	Handlers       []Handler
	DefaultHandler string
	// ConmonPath is the monitor; "" searches PATH.
	ConmonPath string
	// NewRuntime makes each handler's OCI runtime; nil is oci.New (tests
	// give a fake).
	NewRuntime func(oci.Config) (oci.Runtime, error)
	// Rootless says crib runs in a user namespace.
	Rootless bool
	// UsernsRoot is where the root file systems of containers in a pod's
	// own user namespace are bound for runc (UsernsRootDir); "" means
	// UsernsRootDir("/tmp", RunRoot).
	UsernsRoot string
	// Cgroups reads container cgroups; nil (or driver "none") means there
	// are none and stats come from /proc.
	Cgroups CgroupReader
	// Host is what resource conversion needs to know (cgroup v2, swap,
	// hugepage sizes); the zero value means ProbeHost.
	Host *HostInfo
	// Reaper is the daemon's subreaper (StartReaper); nil runs commands
	// without registering them (tests of single commands).
	Reaper *Reaper
	// RootfsUsage measures a container's writable layer for Stats; nil
	// reports 0. It is an option of the Manager, not of each Create, so a
	// restarted crib measures the containers it re-attaches.
	RootfsUsage func(ctx context.Context, id string) (bytes, inodes uint64, err error)
	Logger      *slog.Logger
}

// CgroupReader is the part of cgroups.Manager runtime uses: the driver
// name and a container cgroup's usage and detail. path is the
// container's Spec.Linux.CgroupsPath, as given to the OCI runtime
// (cgroups.Manager's ContainerPath).
type CgroupReader interface {
	Name() string
	Stats(path string) (*cgroups.Stats, error)
	Metrics(path string) (*cgroups.Metrics, error)
}

// Manager runs containers through conmon and an OCI runtime and keeps
// their records. It is safe for concurrent use.
type Manager struct {
	log         *slog.Logger
	runRoot     string
	exitDir     string
	attachDir   string
	store       store
	handlers    map[string]Handler
	runtimes    map[string]oci.Runtime
	defHandler  string
	rootless    bool
	usernsRoot  string
	cgroups     CgroupReader
	host        HostInfo
	reaper      *Reaper
	events      chan Event
	stopWatch   func()
	closeOnce   sync.Once
	rootfsUsage func(ctx context.Context, id string) (bytes, inodes uint64, err error)
	cpu         procfs.CPUSampler // usage_nano_cores of each container

	mu         sync.Mutex
	containers map[string]*entry
	// ids indexes the containers that have a record, for Resolve.
	ids idindex.Index
}

// entry is one container in memory. op serializes the operations that
// change the container (create, start, stop, remove, update); the record
// itself is guarded by Manager.mu, so exit handling never waits for an
// operation (Stop waits for exit handling).
type entry struct {
	op     sync.Mutex
	c      *Container
	exited chan struct{} // closed once the container is exited
}

// Event is a container life-cycle change, for GetContainerEvents.
type Event struct {
	ID        string
	SandboxID string
	Type      EventType
	At        time.Time
}

type EventType int

const (
	EventCreated EventType = iota
	EventStarted
	EventStopped
	EventDeleted
)

// New prepares the directories, loads the records and starts watching for
// exits. Call Recover next to reconcile records with the live system.
func New(o Options) (*Manager, error) {
	if o.Root == "" || o.RunRoot == "" {
		return nil, fmt.Errorf("%w: runtime needs Root and RunRoot", errdefs.ErrInvalidArgument)
	}
	if len(o.Handlers) == 0 {
		return nil, fmt.Errorf("%w: no OCI runtime handler configured", errdefs.ErrInvalidArgument)
	}
	if o.UsernsRoot == "" {
		o.UsernsRoot = UsernsRootDir("/tmp", o.RunRoot)
	}
	m := &Manager{
		log:         o.Logger,
		runRoot:     o.RunRoot,
		exitDir:     filepath.Join(o.RunRoot, "exits"),
		attachDir:   filepath.Join(o.RunRoot, "attach"),
		store:       store{dir: filepath.Join(o.Root, "containers")},
		handlers:    map[string]Handler{},
		runtimes:    map[string]oci.Runtime{},
		defHandler:  o.DefaultHandler,
		rootless:    o.Rootless,
		usernsRoot:  o.UsernsRoot,
		cgroups:     o.Cgroups,
		reaper:      o.Reaper,
		rootfsUsage: o.RootfsUsage,
		events:      make(chan Event, 256),
		containers:  map[string]*entry{},
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.cgroups != nil && m.cgroups.Name() == "none" {
		m.cgroups = nil
	}
	if err := m.setHandlers(o); err != nil {
		return nil, err
	}
	if err := m.setHost(o.Host); err != nil {
		return nil, err
	}
	for _, d := range []string{m.store.dir, m.exitDir, m.attachDir, filepath.Join(m.runRoot, "containers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	w, err := newExitWatcher(m.exitDir, m.handleExit)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m.stopWatch = func() { cancel(); <-done }
	go func() { defer close(done); w.run(ctx) }()
	return m, nil
}

// Close stops watching for exits and returns when the watcher has stopped.
// Containers keep running: their monitors do not depend on crib.
func (m *Manager) Close() { m.closeOnce.Do(m.stopWatch) }

func (m *Manager) setHost(h *HostInfo) (err error) {
	if h != nil {
		m.host = *h
		return nil
	}
	m.host, err = ProbeHost()
	return err
}

// load reads the records into memory (Recover reconciles them).
func (m *Manager) load() error {
	records, errs := m.store.loadAll()
	for _, err := range errs {
		m.log.Warn("skipping an unreadable container record", "err", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range records {
		e := &entry{c: c, exited: make(chan struct{})}
		if c.State == StateExited {
			close(e.exited)
		}
		m.containers[c.ID] = e
		m.ids.Add(c.ID)
	}
	return nil
}

// Events delivers life-cycle events; when nobody reads, events are dropped
// rather than blocking containers.
func (m *Manager) Events() <-chan Event { return m.events }

func (m *Manager) emit(c *Container, t EventType) {
	select {
	case m.events <- Event{ID: c.ID, SandboxID: c.SandboxID, Type: t, At: time.Now()}:
	default:
	}
}
