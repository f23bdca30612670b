package runtime

import (
	"fmt"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// setNamespaces joins the pod's namespaces by path, leaves out the ones the
// pod shares with the node, and gives the container its own mount
// namespace. The hostname is set only in the pod's own UTS namespace.
func (b *specBuilder) setNamespaces() error {
	nss, err := b.userNamespace()
	if err != nil {
		return err
	}
	pid, err := b.pidNamespace()
	if err != nil {
		return err
	}
	if pid != nil {
		nss = append(nss, *pid)
	}
	ns := b.in.Namespaces
	for _, p := range []struct {
		typ  specs.LinuxNamespaceType
		name string
		ns   NamespacePath
	}{
		{specs.IPCNamespace, "IPC", ns.IPC},
		{specs.UTSNamespace, "UTS", ns.UTS},
		{specs.MountNamespace, "", NamespacePath{}},
		{specs.NetworkNamespace, "network", ns.Network},
	} {
		switch {
		case p.typ == specs.MountNamespace:
			nss = append(nss, specs.LinuxNamespace{Type: p.typ})
		case p.ns.Host:
		case p.ns.Path == "":
			return fmt.Errorf("%w: the pod has no %s namespace to join", errdefs.ErrFailedPrecondition, p.name)
		default:
			nss = append(nss, specs.LinuxNamespace{Type: p.typ, Path: p.ns.Path})
		}
	}
	if b.in.Host.CgroupV2 && (!b.in.Rootless || b.in.CgroupsPath != "") {
		// A private cgroup namespace makes /sys/fs/cgroup show the
		// container's own subtree as / (containerd and CRI-O do the same
		// on v2). Rootless only with a cgroup of its own: an unconfined
		// container would see crib's cgroup as its root.
		nss = append(nss, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	b.spec.Linux.Namespaces = nss
	if !ns.UTS.Host {
		b.spec.Hostname = b.in.Sandbox.GetHostname()
	}
	return nil
}

// namespaceOptions are the container's, or the pod's when the container
// gives none (crictl users often set them only on the pod).
func (b *specBuilder) namespaceOptions() *runtimeapi.NamespaceOption {
	if o := b.sc.GetNamespaceOptions(); o != nil {
		return o
	}
	return b.in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions()
}

func (b *specBuilder) pidNamespace() (*specs.LinuxNamespace, error) {
	opts := b.namespaceOptions()
	switch opts.GetPid() {
	case runtimeapi.NamespaceMode_NODE:
		return nil, nil
	case runtimeapi.NamespaceMode_CONTAINER:
		return &specs.LinuxNamespace{Type: specs.PIDNamespace}, nil
	case runtimeapi.NamespaceMode_POD:
		if b.in.Namespaces.PID == "" {
			return nil, fmt.Errorf("%w: PID mode POD but the pod has no shared PID namespace", errdefs.ErrFailedPrecondition)
		}
		return &specs.LinuxNamespace{Type: specs.PIDNamespace, Path: b.in.Namespaces.PID}, nil
	case runtimeapi.NamespaceMode_TARGET:
		if b.in.Namespaces.TargetPID == "" {
			return nil, fmt.Errorf("%w: PID mode TARGET but the PID namespace of target container %q is unknown", errdefs.ErrInvalidArgument, opts.GetTargetId())
		}
		return &specs.LinuxNamespace{Type: specs.PIDNamespace, Path: b.in.Namespaces.TargetPID}, nil
	default:
		return nil, fmt.Errorf("%w: unknown PID namespace mode %d", errdefs.ErrInvalidArgument, opts.GetPid())
	}
}

// userNamespace joins the pod's own user namespace, first, so that runc
// enters it before the namespaces it owns; crib's own user namespace
// needs no entry. A pod that asked for one but has none (a record from
// before crib made them) is refused rather than run in crib's.
func (b *specBuilder) userNamespace() ([]specs.LinuxNamespace, error) {
	ns := b.in.Namespaces
	userns := b.in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	switch userns.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD:
		if ns.User == "" && (len(userns.GetUids()) > 0 || len(userns.GetGids()) > 0) {
			return nil, fmt.Errorf("%w: the pod asked for its own user namespace but has none", errdefs.ErrFailedPrecondition)
		}
	default:
		return nil, fmt.Errorf("%w: user namespace mode %s is not allowed", errdefs.ErrInvalidArgument, userns.GetMode())
	}
	if ns.User == "" {
		return nil, nil
	}
	if len(ns.UIDMap) == 0 || len(ns.GIDMap) == 0 {
		return nil, fmt.Errorf("%w: the pod's user namespace has no id mapping", errdefs.ErrFailedPrecondition)
	}
	b.spec.Linux.UIDMappings, b.spec.Linux.GIDMappings = ns.UIDMap, ns.GIDMap
	return []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: ns.User}}, nil
}

// setSysctls applies the pod's sysctls. Only namespaced keys are allowed,
// and only when the container has the namespace they live in: otherwise
// they would change the node.
func (b *specBuilder) setSysctls() error {
	sysctls := b.in.Sandbox.GetLinux().GetSysctls()
	if len(sysctls) == 0 {
		return nil
	}
	keys := make([]string, 0, len(sysctls))
	for k := range sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(sysctls))
	for _, k := range keys {
		name := dottedSysctl(k)
		if err := b.checkSysctl(name); err != nil {
			return err
		}
		out[name] = sysctls[k]
	}
	b.spec.Linux.Sysctl = out
	return nil
}

func (b *specBuilder) checkSysctl(name string) error {
	switch {
	case strings.HasPrefix(name, "net."):
		if b.in.Namespaces.Network.Host {
			return fmt.Errorf("%w: sysctl %q needs the pod's own network namespace, but the pod uses the host's", errdefs.ErrInvalidArgument, name)
		}
	case ipcSysctl(name):
		if b.in.Namespaces.IPC.Host {
			return fmt.Errorf("%w: sysctl %q needs the pod's own IPC namespace, but the pod uses the host's", errdefs.ErrInvalidArgument, name)
		}
	default:
		return fmt.Errorf("%w: sysctl %q is not namespaced; only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* may be set", errdefs.ErrInvalidArgument, name)
	}
	return nil
}

func ipcSysctl(name string) bool {
	return strings.HasPrefix(name, "kernel.shm") ||
		strings.HasPrefix(name, "kernel.msg") ||
		name == "kernel.sem" ||
		strings.HasPrefix(name, "fs.mqueue.")
}

// dottedSysctl converts the slash form Kubernetes also accepts
// ("net/ipv4/conf/eth0.100/forwarding") to the dotted form, where a dot
// inside a component becomes a slash.
func dottedSysctl(name string) string {
	if !strings.Contains(name, "/") {
		return name
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, name)
}
