package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/atomicfile"
	"github.com/crib-dev/crib/internal/idmap"
)

// State is a pod sandbox's CRI state.
type State string

const (
	StateReady    State = "Ready"
	StateNotReady State = "NotReady"
	// stateCreating marks a record Create wrote before its last step; a
	// record found in it at start-up is a create that crashed midway.
	stateCreating State = "Creating"
)

// Sandbox is the durable record of one pod sandbox. A path left "" means
// the pod uses crib's own namespace of that kind (host network, host IPC,
// host PID in CRI terms).
type Sandbox struct {
	ID             string
	Config         *runtimeapi.PodSandboxConfig `json:"-"`
	RuntimeHandler string
	CreatedAt      time.Time
	State          State

	NetNSPath, IPCNSPath, UTSNSPath string
	// UserNSPath pins the pod's own user namespace (hostUsers: false);
	// "" when the pod runs in crib's. UIDMap and GIDMap are its mapping
	// in crib's ids.
	UserNSPath     string
	UIDMap, GIDMap []idmap.Mapping `json:",omitempty"`
	// PIDNSPath is the reaper's PID namespace when the pod shares one.
	PIDNSPath       string
	ReaperPID       int
	ReaperStartTime uint64 // guards ReaperPID against pid reuse

	IP            string
	AdditionalIPs []string
	// NetworkName is the CNI network the pod was attached to.
	NetworkName string

	HostsPath, ResolvPath, HostnamePath, ShmPath string
	// CgroupParent is the pod cgroup: containers' cgroupsPath go under it
	// (see cgroups.Manager.ContainerPath); "" when pods run unconfined.
	CgroupParent string

	ProcessLabel, MountLabel string
}

// sandboxFields is Sandbox without its methods, so the JSON codec can
// encode the plain fields while the config goes through protojson.
type sandboxFields Sandbox

type sandboxJSON struct {
	*sandboxFields
	Config json.RawMessage `json:"Config,omitempty"`
}

// MarshalJSON keeps the CRI config in its canonical protojson form.
func (s *Sandbox) MarshalJSON() ([]byte, error) {
	out := sandboxJSON{sandboxFields: (*sandboxFields)(s)}
	if s.Config != nil {
		b, err := protojson.Marshal(s.Config)
		if err != nil {
			return nil, fmt.Errorf("encoding the pod config: %w", err)
		}
		out.Config = b
	}
	return json.Marshal(out)
}

func (s *Sandbox) UnmarshalJSON(b []byte) error {
	in := sandboxJSON{sandboxFields: (*sandboxFields)(s)}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	if len(in.Config) > 0 {
		s.Config = &runtimeapi.PodSandboxConfig{}
		if err := protojson.Unmarshal(in.Config, s.Config); err != nil {
			return fmt.Errorf("decoding the pod config: %w", err)
		}
	}
	return nil
}

// clone is a copy callers may keep; the config is shared and read-only.
func (s *Sandbox) clone() *Sandbox {
	c := *s
	c.AdditionalIPs = append([]string(nil), s.AdditionalIPs...)
	return &c
}

const recordFile = "sandbox.json"

func (m *Manager) recordDir(id string) string { return filepath.Join(m.opts.Root, "sandboxes", id) }
func (m *Manager) runDir(id string) string    { return filepath.Join(m.opts.RunRoot, "sandboxes", id) }

// save writes the record atomically: a reader (or a crash) sees the old
// record or the new one, never a mix.
func (m *Manager) save(sb *Sandbox) error {
	b, err := json.MarshalIndent(sb, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(m.recordDir(sb.ID), recordFile), b, 0o600); err != nil {
		return fmt.Errorf("saving the record of pod %s: %w", sb.ID, err)
	}
	return nil
}

func loadRecord(path string) (*Sandbox, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sb := &Sandbox{}
	if err := json.Unmarshal(b, sb); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sb, nil
}
