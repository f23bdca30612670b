package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/atomicfile"
	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/steptrace"
	"github.com/crib-dev/crib/runtime/cgroups"
	"github.com/crib-dev/crib/runtime/oci"
)

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
}

// Create writes the bundle and the record of a created container; no
// runtime or monitor runs yet: Start launches both (launch), so a create
// costs no process (as CRI allows: a created container has no pid).
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
	m.ids.Add(c.ID)
	m.mu.Unlock()
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
func (m *Manager) create(ctx context.Context, o CreateOptions, rt oci.Runtime) (c *Container, err error) {
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
	undo = append(undo, func() {
		if err := removeBundle(f.bundle, m.usernsRoot); err != nil {
			m.log.Warn("rollback: removing the bundle", "container", o.ID, "err", err)
		}
	})
	spec := *o.Spec
	spec.Version = rt.SpecVersion(spec.Version)
	if err := idmapMounts(f.bundle, m.usernsRoot, &spec, m.log); err != nil {
		return nil, fmt.Errorf("container %s: %w", o.ID, err)
	}
	if err := writeSpec(f.bundle, &spec); err != nil {
		return nil, fmt.Errorf("container %s: %w", o.ID, err)
	}
	steptrace.Mark(ctx, "bundle")
	if err := checkLogInside(o.LogDirectory, o.LogPath); err != nil {
		return nil, err
	}
	if err := m.prepareLog(o.LogPath, &undo); err != nil {
		return nil, fmt.Errorf("container %s: %w", o.ID, err)
	}
	steptrace.Mark(ctx, "log")
	c = newRecord(o, rt.Name())
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
	steptrace.Mark(ctx, "record")
	return c, nil
}

func newRecord(o CreateOptions, handler string) *Container {
	return &Container{
		ID: o.ID, SandboxID: o.SandboxID, Name: o.Name,
		Attempt:         o.Config.GetMetadata().GetAttempt(),
		Config:          proto.Clone(o.Config).(*runtimeapi.ContainerConfig),
		ImageRef:        o.ImageRef,
		ImageID:         o.ImageID,
		LogPath:         o.LogPath,
		LogDirectory:    o.LogDirectory,
		Handler:         handler,
		State:           StateCreated,
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
	return atomicfile.WriteVolatile(filepath.Join(bundle, "config.json"), data, 0o600)
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
