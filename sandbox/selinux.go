package sandbox

import (
	"fmt"

	"github.com/opencontainers/selinux/go-selinux"
	"github.com/opencontainers/selinux/go-selinux/label"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// LabelAllocator hands out SELinux labels with unique MCS levels. The
// default is go-selinux, which returns empty labels where SELinux is off.
type LabelAllocator interface {
	// Init returns a process and a mount label; options are go-selinux's
	// "user:", "role:", "type:", "level:" overrides. Without a level it
	// reserves a fresh one.
	Init(options []string) (processLabel, mountLabel string, err error)
	// Reserve marks a label in use (records found at start-up).
	Reserve(label string)
	// Release frees a label's level for reuse.
	Release(label string)
}

type goSELinux struct{}

func (goSELinux) Init(o []string) (string, string, error) { return label.InitLabels(o) }
func (goSELinux) Reserve(l string)                        { selinux.ReserveLabel(l) }
func (goSELinux) Release(l string)                        { selinux.ReleaseLabel(l) }

// labelOptions turns the pod's SELinuxOptions into go-selinux options; a
// given level is honoured instead of a fresh one.
func labelOptions(o *runtimeapi.SELinuxOption) []string {
	var out []string
	for _, kv := range [][2]string{{"user", o.GetUser()}, {"role", o.GetRole()}, {"type", o.GetType()}, {"level", o.GetLevel()}} {
		if kv[1] != "" {
			out = append(out, kv[0]+":"+kv[1])
		}
	}
	return out
}

func (m *Manager) allocateLabels(sb *Sandbox) error {
	opts := labelOptions(sb.Config.GetLinux().GetSecurityContext().GetSelinuxOptions())
	p, mnt, err := m.labels.Init(opts)
	if err != nil {
		return fmt.Errorf("%w: SELinux label for pod %s: %v", errdefs.ErrInvalidArgument, sb.ID, err)
	}
	sb.ProcessLabel, sb.MountLabel = p, mnt
	return nil
}

func (m *Manager) releaseLabels(sb *Sandbox) {
	if sb.ProcessLabel != "" {
		m.labels.Release(sb.ProcessLabel)
	}
	sb.ProcessLabel, sb.MountLabel = "", ""
}
