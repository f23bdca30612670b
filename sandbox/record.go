package sandbox

import (
	"fmt"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/internal/record"
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
	ID             string                       `json:"id"`
	Config         *runtimeapi.PodSandboxConfig `json:"-"`
	RuntimeHandler string                       `json:"runtime_handler,omitempty"`
	CreatedAt      time.Time                    `json:"created_at"`
	State          State                        `json:"state"`

	NetNSPath string `json:"net_ns_path,omitempty"`
	IPCNSPath string `json:"ipc_ns_path,omitempty"`
	UTSNSPath string `json:"uts_ns_path,omitempty"`
	// UserNSPath pins the pod's own user namespace (hostUsers: false);
	// "" when the pod runs in crib's. UIDMap and GIDMap are its mapping
	// in crib's ids.
	UserNSPath string          `json:"user_ns_path,omitempty"`
	UIDMap     []idmap.Mapping `json:"uid_map,omitempty"`
	GIDMap     []idmap.Mapping `json:"gid_map,omitempty"`
	// PIDNSPath is the reaper's PID namespace when the pod shares one.
	PIDNSPath       string `json:"pid_ns_path,omitempty"`
	ReaperPID       int    `json:"reaper_pid,omitempty"`
	ReaperStartTime uint64 `json:"reaper_start_time,omitempty"` // guards ReaperPID against pid reuse

	IP            string   `json:"ip,omitempty"`
	AdditionalIPs []string `json:"additional_ips,omitempty"`
	// NetworkName is the CNI network the pod was attached to.
	NetworkName string `json:"network_name,omitempty"`
	// Stopped records a Stop that finished: network detached, host ports
	// and reaper gone. Remove then skips them (a second CNI DEL costs as
	// much as the first); a Stop cut short by a crash leaves it false, so
	// the next Stop or Remove does the whole work again.
	Stopped bool `json:"stopped,omitempty"`

	HostsPath    string `json:"hosts_path,omitempty"`
	ResolvPath   string `json:"resolv_path,omitempty"`
	HostnamePath string `json:"hostname_path,omitempty"`
	ShmPath      string `json:"shm_path,omitempty"`
	// CgroupParent is the pod cgroup: containers' cgroupsPath go under it
	// (see cgroups.Manager.ContainerPath); "" when pods run unconfined.
	CgroupParent string `json:"cgroup_parent,omitempty"`

	ProcessLabel string `json:"process_label,omitempty"`
	MountLabel   string `json:"mount_label,omitempty"`
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
	b, err := record.Marshal(sb, sb.Config)
	if err == nil {
		err = record.Save(filepath.Join(m.recordDir(sb.ID), recordFile), b)
	}
	if err != nil {
		return fmt.Errorf("saving the record of pod %s: %w", sb.ID, err)
	}
	return nil
}

// decodeRecord reads a pod record, today's or one an earlier crib wrote.
func decodeRecord(data []byte) (*Sandbox, error) {
	sb := &Sandbox{}
	cfg := &runtimeapi.PodSandboxConfig{}
	has, err := record.Unmarshal(data, sb, cfg)
	if err != nil {
		return nil, err
	}
	if has {
		sb.Config = cfg
	}
	return sb, nil
}
