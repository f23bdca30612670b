package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/atomicfile"
	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime/cgroups"
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
	// Rootless says crib runs in a user namespace.
	Rootless bool
	// Cgroups reads container cgroups; nil (or driver "none") means there
	// are none and stats come from /proc.
	Cgroups CgroupReader
	// Host is what resource conversion needs to know (cgroup v2, swap,
	// hugepage sizes); the zero value means ProbeHost.
	Host *HostInfo
	// Reaper is the daemon's subreaper (StartReaper); nil runs commands
	// without registering them (tests of single commands).
	Reaper *Reaper
	Logger *slog.Logger
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
	log        *slog.Logger
	runRoot    string
	exitDir    string
	attachDir  string
	store      store
	conmon     string
	handlers   map[string]Handler
	defHandler string
	rootless   bool
	cgroups    CgroupReader
	host       HostInfo
	reaper     *Reaper
	events     chan Event
	stopWatch  func()
	closeOnce  sync.Once
	// rootfsUsage maps an id to the caller's writable-layer measure; it
	// is not persisted (a restarted crib re-supplies it, SetRootfsUsage).
	rootfsUsage sync.Map

	mu         sync.Mutex
	containers map[string]*entry
}

// entry is one container in memory. op serializes the operations that
// change the container (create, start, stop, remove, update); the record
// itself is guarded by Manager.mu, so exit handling never waits for an
// operation (Stop waits for exit handling).
type entry struct {
	op     sync.Mutex
	c      *Container
	exited chan struct{} // closed once the container is exited
	cpu    cpuSample     // last CPU sample, for usage_nano_cores
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
	m := &Manager{
		log:        o.Logger,
		runRoot:    o.RunRoot,
		exitDir:    filepath.Join(o.RunRoot, "exits"),
		attachDir:  filepath.Join(o.RunRoot, "attach"),
		store:      store{dir: filepath.Join(o.Root, "containers")},
		handlers:   map[string]Handler{},
		defHandler: o.DefaultHandler,
		rootless:   o.Rootless,
		cgroups:    o.Cgroups,
		reaper:     o.Reaper,
		events:     make(chan Event, 256),
		containers: map[string]*entry{},
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.cgroups != nil && m.cgroups.Name() == "none" {
		m.cgroups = nil
	}
	if err := m.setHandlers(o.Handlers); err != nil {
		return nil, err
	}
	conmon := o.ConmonPath
	if conmon == "" {
		conmon = "conmon"
	}
	path, err := exec.LookPath(conmon)
	if err != nil {
		return nil, fmt.Errorf("%w: the monitor %s: %v", errdefs.ErrUnavailable, conmon, err)
	}
	m.conmon = path
	if o.Host != nil {
		m.host = *o.Host
	} else if m.host, err = ProbeHost(); err != nil {
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

func (m *Manager) setHandlers(hs []Handler) error {
	for _, h := range hs {
		if h.Name == "" || h.Path == "" {
			return fmt.Errorf("%w: runtime handler %+v needs a name and a path", errdefs.ErrInvalidArgument, h)
		}
		if h.Root == "" {
			h.Root = filepath.Join(m.runRoot, h.Name)
		}
		if err := os.MkdirAll(h.Root, 0o700); err != nil {
			return fmt.Errorf("runtime handler %s: %w", h.Name, err)
		}
		m.handlers[h.Name] = h
	}
	if m.defHandler == "" {
		m.defHandler = hs[0].Name
	}
	if _, ok := m.handlers[m.defHandler]; !ok {
		return fmt.Errorf("%w: default runtime handler %q is not configured", errdefs.ErrInvalidArgument, m.defHandler)
	}
	return nil
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
	}
	return nil
}

func (m *Manager) runtimeFor(handler string) (ociRuntime, error) {
	if handler == "" {
		handler = m.defHandler
	}
	h, ok := m.handlers[handler]
	if !ok {
		return ociRuntime{}, fmt.Errorf("%w: no runtime handler %q", errdefs.ErrNotFound, handler)
	}
	return ociRuntime{h: h, reaper: m.reaper}, nil
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

// CreateOptions describes a container to create.
type CreateOptions struct {
	ID, SandboxID string
	// Name is the container's unique name (the cri layer makes it).
	Name          string
	Config        *runtimeapi.ContainerConfig
	SandboxConfig *runtimeapi.PodSandboxConfig
	// Spec is the OCI spec from GenerateSpec.
	Spec *specs.Spec
	// LogPath is the absolute CRI log path; "" means no log.
	LogPath string
	// LogDirectory is the pod's log directory LogPath must stay inside,
	// also through symlinks; "" skips the check.
	LogDirectory      string
	Handler           string
	ImageRef, ImageID string
	// StopSignal is the image's STOPSIGNAL ("" = SIGTERM).
	StopSignal string
	// ImageVolumes maps the image reference of each image volume to the
	// image id mounted for it, for ContainerStatus and clean-up.
	ImageVolumes map[string]string
	// RootfsUsage measures the writable layer for Stats; may be nil.
	RootfsUsage func() (bytes, inodes uint64, err error)
}

// Create writes the bundle and has the monitor create the container (the
// runtime's create: namespaces and init exist, the command has not run).
// A failure undoes everything it made.
func (m *Manager) Create(ctx context.Context, o CreateOptions) (*Container, error) {
	if err := checkCreate(o); err != nil {
		return nil, err
	}
	if _, err := parseSignal(o.StopSignal); err != nil {
		return nil, err
	}
	rt, err := m.runtimeFor(o.Handler)
	if err != nil {
		return nil, err
	}
	e := &entry{exited: make(chan struct{})}
	e.op.Lock()
	defer e.op.Unlock()
	if err := m.reserve(o.ID, e); err != nil {
		return nil, err
	}
	c, err := m.create(ctx, o, rt)
	if err != nil {
		m.mu.Lock()
		delete(m.containers, o.ID)
		m.mu.Unlock()
		return nil, err
	}
	m.mu.Lock()
	e.c = c
	m.mu.Unlock()
	m.SetRootfsUsage(o.ID, o.RootfsUsage)
	m.emit(c, EventCreated)
	return c.clone(), nil
}

func checkCreate(o CreateOptions) error {
	switch {
	case o.ID == "" || strings.ContainsAny(o.ID, "/.:") || len(o.ID) > 128:
		return fmt.Errorf("%w: container id %q", errdefs.ErrInvalidArgument, o.ID)
	case o.Config == nil || o.Spec == nil || o.Spec.Process == nil:
		return fmt.Errorf("%w: container %s: no config or no OCI spec", errdefs.ErrInvalidArgument, o.ID)
	case o.LogPath != "" && !filepath.IsAbs(o.LogPath):
		return fmt.Errorf("%w: container %s: log path %q is not absolute", errdefs.ErrInvalidArgument, o.ID, o.LogPath)
	case strings.Contains(o.LogPath, ":"):
		// conmon cuts --log-path at ':'.
		return fmt.Errorf("%w: container %s: log path %q contains ':'", errdefs.ErrInvalidArgument, o.ID, o.LogPath)
	}
	return nil
}

// reserve claims the id in memory so a concurrent create of the same id
// fails; e has no record yet and is invisible to Get and List.
func (m *Manager) reserve(id string, e *entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.containers[id]; ok {
		return fmt.Errorf("%w: container %s", errdefs.ErrAlreadyExists, id)
	}
	m.containers[id] = e
	return nil
}

// create does the work of Create; each step's undo is pushed on a stack
// and run in reverse on failure.
func (m *Manager) create(ctx context.Context, o CreateOptions, rt ociRuntime) (c *Container, err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for _, u := range slices.Backward(undo) {
				u()
			}
		}
	}()
	f := m.files(o.ID)
	if err := os.Mkdir(f.bundle, 0o700); err != nil {
		return nil, fmt.Errorf("creating the bundle of container %s: %w", o.ID, err)
	}
	undo = append(undo, func() { _ = os.RemoveAll(f.bundle) })
	if err := writeSpec(f.bundle, specForRuntime(o.Spec, rt.h)); err != nil {
		return nil, fmt.Errorf("container %s: %w", o.ID, err)
	}
	if err := checkLogInside(o.LogDirectory, o.LogPath); err != nil {
		return nil, err
	}
	if err := m.prepareLog(o.LogPath, &undo); err != nil {
		return nil, fmt.Errorf("container %s: %w", o.ID, err)
	}
	undo = append(undo, func() {
		// conmon may have died mid-create and left the runtime's state.
		if err := rt.delete(context.Background(), o.ID); err != nil {
			m.log.Warn("rollback: deleting the runtime state", "container", o.ID, "err", err)
		}
		_ = f.removeOutside()
	})
	started, err := m.startMonitor(ctx, monitorRequest{id: o.ID, name: o.Name, logPath: o.LogPath, rt: rt, files: f,
		stdio: monitorStdio{tty: o.Config.GetTty(), stdin: o.Config.GetStdin(), stdinOnce: o.Config.GetStdinOnce()}})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { m.killMonitor(started.monitorPid, o.ID) })
	if err := recordCensus(f.bundle, started.pid); err != nil {
		return nil, fmt.Errorf("container %s: %w", o.ID, err)
	}
	undo = append(undo, func() {
		if err := m.endProcesses(context.Background(), o.ID); err != nil {
			m.log.Warn("rollback: ending the container's processes", "container", o.ID, "err", err)
		}
	})
	c = newRecord(o, rt.h.Name, started)
	// Rootless without a cgroup the spec carries no limits (setResources):
	// say so in the record, so ContainerStatus reports none.
	c.Unconfined = m.rootless && c.CgroupsPath == ""
	if c.Unconfined && cgroups.AsksForLimits(o.Config.GetLinux().GetResources()) {
		m.log.Warn("container asked for resource limits, but crib has no delegated cgroup: it runs unconfined",
			"container", o.ID, "pod", o.SandboxID, "name", o.Name)
	}
	if err := m.store.save(c); err != nil {
		return nil, err
	}
	return c, nil
}

func newRecord(o CreateOptions, handler string, s monitorStarted) *Container {
	return &Container{
		ID: o.ID, SandboxID: o.SandboxID, Name: o.Name,
		Attempt:         o.Config.GetMetadata().GetAttempt(),
		Config:          proto.Clone(o.Config).(*runtimeapi.ContainerConfig),
		ImageRef:        o.ImageRef,
		ImageID:         o.ImageID,
		LogPath:         o.LogPath,
		Handler:         handler,
		State:           StateCreated,
		Pid:             s.pid,
		MonitorPid:      s.monitorPid,
		CreatedAt:       time.Now(),
		Labels:          o.Config.GetLabels(),
		Annotations:     o.Config.GetAnnotations(),
		StopSignal:      o.StopSignal,
		CgroupsPath:     o.Spec.Linux.CgroupsPath,
		OwnPIDNamespace: ownPIDNamespace(o.Spec),
		User:            processUser(o.Spec),
		ImageVolumes:    o.ImageVolumes,
	}
}

// ownPIDNamespace: a new PID namespace (no path) holds exactly the
// container's processes.
func ownPIDNamespace(s *specs.Spec) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

func writeSpec(bundle string, s *specs.Spec) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding the OCI spec: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600)
}

func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decoding %s/config.json: %w", bundle, err)
	}
	return &s, nil
}

// prepareLog creates the log's directory (the pod's log_directory may not
// exist yet) and, on rollback, removes a log file conmon created.
func (m *Manager) prepareLog(path string, undo *[]func()) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating the log directory: %w", err)
	}
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		*undo = append(*undo, func() { _ = os.Remove(path) })
	}
	return nil
}

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
	if err := rt.start(ctx, id); err != nil {
		m.failStart(ctx, e, rt, err)
		return fmt.Errorf("starting container %s: %w", id, err)
	}
	m.update(e, func(c *Container) {
		c.StartedAt = at
		if c.State == StateCreated { // it may have exited already
			c.State = StateRunning
		}
	})
	m.emit(c, EventStarted)
	return nil
}

// failStart kills a container whose start failed and records why, so it
// shows as exited instead of staying created forever.
func (m *Manager) failStart(ctx context.Context, e *entry, rt ociRuntime, cause error) {
	_ = rt.kill(ctx, e.c.ID, "KILL", false)
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

// Update applies new resource limits to a running or created container and
// records them in its config.
func (m *Manager) Update(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	e, err := m.lookup(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	m.handleExit(id)
	c := m.snapshot(e)
	if c.State != StateRunning && c.State != StateCreated {
		return fmt.Errorf("%w: container %s is %s", errdefs.ErrFailedPrecondition, id, c.State)
	}
	if c.CgroupsPath == "" {
		return fmt.Errorf("%w: container %s has no cgroup, so its resources cannot be limited", errdefs.ErrFailedPrecondition, id)
	}
	b := &specBuilder{in: SpecInput{Host: m.host, CgroupsPath: c.CgroupsPath, Rootless: m.rootless}}
	res := &specs.LinuxResources{}
	if err := b.fillResources(res, r); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return err
	}
	if err := rt.update(ctx, id, res); err != nil {
		return fmt.Errorf("updating container %s: %w", id, err)
	}
	m.recordResources(e, r, res)
	return nil
}

// recordResources keeps the new limits in the record (ContainerStatus
// reports them) and in the bundle's spec (exec and restarts read it).
func (m *Manager) recordResources(e *entry, r *runtimeapi.LinuxContainerResources, res *specs.LinuxResources) {
	m.update(e, func(c *Container) {
		cfg := proto.Clone(c.Config).(*runtimeapi.ContainerConfig)
		if cfg.Linux == nil {
			cfg.Linux = &runtimeapi.LinuxContainerConfig{}
		}
		cfg.Linux.Resources = proto.Clone(r).(*runtimeapi.LinuxContainerResources)
		c.Config = cfg
	})
	f := m.files(e.c.ID)
	if s, err := readSpec(f.bundle); err == nil {
		s.Linux.Resources = res
		if err := writeSpec(f.bundle, s); err != nil {
			m.log.Warn("recording new limits in the bundle", "container", e.c.ID, "err", err)
		}
	}
}

// processUser is the identity the container's first process runs with,
// as ContainerStatus reports it.
func processUser(s *specs.Spec) *User {
	if s == nil || s.Process == nil {
		return nil
	}
	u := s.Process.User
	groups := make([]int64, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		groups = append(groups, int64(g))
	}
	return &User{UID: int64(u.UID), GID: int64(u.GID), SupplementalGroups: groups}
}

// checkLogInside refuses a log path whose directory, once symlinks are
// resolved, is not inside the pod's log directory: the monitor would
// otherwise write wherever a planted symlink points.
func checkLogInside(dir, path string) error {
	if dir == "" || path == "" {
		return nil
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // made below; nothing in it can point elsewhere yet
		}
		return fmt.Errorf("resolving the log directory %s: %w", dir, err)
	}
	parent := filepath.Dir(path)
	realParent, err := filepath.EvalSymlinks(parent)
	if errors.Is(err, os.ErrNotExist) {
		// Not made yet: check the deepest part that exists.
		for p := filepath.Dir(parent); ; p = filepath.Dir(p) {
			if rp, err := filepath.EvalSymlinks(p); err == nil {
				realParent = filepath.Join(rp, strings.TrimPrefix(parent, p))
				break
			}
			if p == "/" || p == "." {
				break
			}
		}
	} else if err != nil {
		return fmt.Errorf("resolving %s: %w", parent, err)
	}
	if realParent != realDir && !strings.HasPrefix(realParent, realDir+string(filepath.Separator)) {
		return fmt.Errorf("%w: log path %s leaves the pod's log directory %s through a symlink", errdefs.ErrInvalidArgument, path, dir)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%w: log path %s is a symlink", errdefs.ErrInvalidArgument, path)
	}
	return nil
}
