package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/record"
)

// State is where a container is in its life.
type State string

const (
	StateCreated State = "created"
	StateRunning State = "running"
	StateExited  State = "exited"
	StateUnknown State = "unknown"
)

// CRI spells the state as the CRI does.
func (s State) CRI() runtimeapi.ContainerState {
	switch s {
	case StateCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case StateRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case StateExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// Reasons a container exited, as ContainerStatus reports them.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
	// ReasonStartError: the runtime failed to start the created container.
	ReasonStartError = "StartError"
	// ReasonHostRestarted: the monitor is gone and left no exit code, so
	// the host rebooted or the monitor was killed; the exit code is then
	// exitCodeUnknown.
	ReasonHostRestarted = "HostRestarted"
)

// exitCodeUnknown is reported when nobody saw the container exit.
const exitCodeUnknown = 255

// Container is the durable record of one container, written under
// Root/containers/<id>/container.json. Values returned by the Manager are
// copies; changing them changes nothing.
type Container struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandbox_id"`
	Name      string `json:"name"`
	Attempt   uint32 `json:"attempt"`
	// Config is the CRI request the container was created from (stored as
	// protojson); Update replaces its resources.
	Config   *runtimeapi.ContainerConfig `json:"-"`
	ImageRef string                      `json:"image_ref"`
	ImageID  string                      `json:"image_id"`
	LogPath  string                      `json:"log_path,omitempty"`
	// LogDirectory is the pod's log directory, which the log path is
	// checked to stay inside again when Start launches the monitor.
	LogDirectory string            `json:"log_directory,omitempty"`
	Handler      string            `json:"handler"`
	State        State             `json:"state"`
	Pid          int               `json:"pid,omitempty"`
	MonitorPid   int               `json:"monitor_pid,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
	StartedAt    time.Time         `json:"started_at,omitzero"`
	FinishedAt   time.Time         `json:"finished_at,omitzero"`
	ExitCode     int32             `json:"exit_code"`
	Reason       string            `json:"reason,omitempty"`
	Message      string            `json:"message,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StopSignal   string            `json:"stop_signal,omitempty"`
	// CgroupsPath is the spec's cgroup ("" = none); OwnPIDNamespace says
	// the container's processes are exactly those of its PID namespace.
	CgroupsPath     string `json:"cgroups_path,omitempty"`
	OwnPIDNamespace bool   `json:"own_pid_namespace,omitempty"`
	// Unconfined: crib had no cgroup for the container, so none of its
	// requested limits were applied.
	Unconfined bool `json:"unconfined,omitempty"`
	// User is the identity of the container's first process.
	User *User `json:"user,omitempty"`
	// ImageVolumes maps image-volume references to the mounted image ids.
	ImageVolumes map[string]string `json:"image_volumes,omitempty"`
}

// User is a process identity in the container's terms.
type User struct {
	UID                int64   `json:"uid"`
	GID                int64   `json:"gid"`
	SupplementalGroups []int64 `json:"supplemental_groups,omitempty"`
}

func (c *Container) clone() *Container {
	cp := *c
	return &cp
}

// marshal encodes the record with the codec every crib record shares.
func (c *Container) marshal() ([]byte, error) {
	b, err := record.Marshal(c, c.Config)
	if err != nil {
		return nil, fmt.Errorf("encoding container %s: %w", c.ID, err)
	}
	return b, nil
}

func unmarshalContainer(data []byte) (*Container, error) {
	c := &Container{}
	cfg := &runtimeapi.ContainerConfig{}
	has, err := record.Unmarshal(data, c, cfg)
	if err != nil {
		return nil, fmt.Errorf("decoding container %s: %w", c.ID, err)
	}
	if has {
		c.Config = cfg
	}
	return c, nil
}

// store keeps container records in one directory per container.
type store struct{ dir string }

const recordFile = "container.json"

func (s store) path(id string) string { return filepath.Join(s.dir, id, recordFile) }

// save writes the record atomically: a crash leaves the old or the new
// record, never a torn one.
func (s store) save(c *Container) error { return s.write(c, record.Save) }

// saveUnsynced replaces an existing record without syncing it: for a
// change a power loss makes moot (every container is lost then, whatever
// its record said: see Recover).
func (s store) saveUnsynced(c *Container) error { return s.write(c, record.SaveUnsynced) }

func (s store) write(c *Container, save func(path string, data []byte) error) error {
	data, err := c.marshal()
	if err != nil {
		return err
	}
	if err := save(s.path(c.ID), data); err != nil {
		return fmt.Errorf("saving container %s: %w", c.ID, err)
	}
	return nil
}

// removeRecord deletes the record file alone; its directory, empty or
// not, is remove's (Recover sweeps one left without a record).
func (s store) removeRecord(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the record of container %s: %w", id, err)
	}
	return nil
}

// remove deletes the record and its directory: two unlinks when the
// directory holds only the record (a removal is on every pod's path),
// RemoveAll for whatever else a crash left in it.
func (s store) remove(id string) error {
	if err := os.Remove(s.path(id)); err == nil || errors.Is(err, os.ErrNotExist) {
		if err := os.Remove(filepath.Join(s.dir, id)); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	if err := os.RemoveAll(filepath.Join(s.dir, id)); err != nil {
		return fmt.Errorf("removing the record of container %s: %w", id, err)
	}
	return nil
}

// loadAll reads every record; an unreadable one is reported, not fatal.
func (s store) loadAll() ([]*Container, []error) {
	var out []*Container
	errs, err := record.LoadDir(s.dir, recordFile, func(_ string, data []byte) error {
		c, err := unmarshalContainer(data)
		if err == nil {
			out = append(out, c)
		}
		return err
	})
	if err != nil {
		errs = append(errs, err)
	}
	return out, errs
}
