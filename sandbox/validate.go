package sandbox

import (
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

var errInvalidSysctl = fmt.Errorf("%w: sysctl", errdefs.ErrInvalidArgument)

// podPlan is what a pod config asks for, checked before Create touches
// anything.
type podPlan struct {
	ownNet, ownIPC, ownUTS bool
	sharedPID              bool // one PID namespace for the pod, with a reaper
	hostPID                bool
	hostname               string
	sysctls                map[string]string // /proc/sys-relative path → value
	ports                  []PortMapping     // PodIP filled once known
	userns                 *usernsPlan       // nil: crib's own user namespace
}

func (m *Manager) plan(cfg *runtimeapi.PodSandboxConfig) (*podPlan, error) {
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	p := &podPlan{
		ownNet: ns.GetNetwork() != runtimeapi.NamespaceMode_NODE,
		ownIPC: ns.GetIpc() != runtimeapi.NamespaceMode_NODE,
	}
	// A host-network pod keeps the node's hostname, as the kubelet expects.
	p.ownUTS = p.ownNet
	// POD is the enum's zero value: a config that says nothing shares one
	// PID namespace per pod, as the CRI defines; the kubelet asks for
	// CONTAINER unless shareProcessNamespace is set.
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_POD:
		p.sharedPID = true
	case runtimeapi.NamespaceMode_NODE:
		p.hostPID = true
	}
	var err error
	if p.userns, err = m.planUserns(ns); err != nil {
		return nil, err
	}
	p.hostname = podHostname(cfg, p.ownUTS)
	if p.sysctls, err = checkSysctls(cfg.GetLinux().GetSysctls(), p.ownNet, p.ownIPC); err != nil {
		return nil, err
	}
	if p.ports, err = m.checkPorts(cfg.GetPortMappings(), p.ownNet); err != nil {
		return nil, err
	}
	return p, nil
}

func podHostname(cfg *runtimeapi.PodSandboxConfig, ownUTS bool) string {
	if h := cfg.GetHostname(); h != "" || !ownUTS {
		return h
	}
	name := cfg.GetMetadata().GetName()
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}

// checkSysctls admits the namespaced sysctls (the ones that change only the
// pod's own net or IPC namespace) and maps each to its /proc/sys path.
func checkSysctls(in map[string]string, ownNet, ownIPC bool) (map[string]string, error) {
	out := map[string]string{}
	for name, value := range in {
		dotted := sysctlDotted(name)
		switch {
		case strings.HasPrefix(dotted, "net."):
			if !ownNet {
				return nil, fmt.Errorf("%w %s: a pod on the host network cannot set net.* sysctls", errInvalidSysctl, name)
			}
		case dotted == "kernel.sem" || strings.HasPrefix(dotted, "kernel.shm") ||
			strings.HasPrefix(dotted, "kernel.msg") || strings.HasPrefix(dotted, "fs.mqueue."):
			if !ownIPC {
				return nil, fmt.Errorf("%w %s: a pod in the host IPC namespace cannot set IPC sysctls", errInvalidSysctl, name)
			}
		default:
			return nil, fmt.Errorf("%w %s is not namespaced (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)", errInvalidSysctl, name)
		}
		if strings.Contains(dotted, "..") || strings.ContainsAny(value, "\n") {
			return nil, fmt.Errorf("%w %s=%q is malformed", errInvalidSysctl, name, value)
		}
		out[sysctlPath(name)] = value
	}
	return out, nil
}

// sysctlDotted and sysctlPath accept both spellings the kubelet allows:
// "net.ipv4.ip_forward" and "net/ipv4/conf/eth0.100/rp_filter" (slashes
// separate, so dots may be part of a name).
func sysctlDotted(name string) string {
	if strings.Contains(name, "/") {
		return strings.ReplaceAll(name, "/", ".")
	}
	return name
}

func sysctlPath(name string) string {
	if strings.Contains(name, "/") {
		return strings.Trim(name, "/")
	}
	return strings.ReplaceAll(name, ".", "/")
}

// checkPorts turns the host-port mappings into PortMappings, refusing what
// cannot work: an unknown protocol, and in rootless mode a host port below
// the host's unprivileged port start, which crib's parent cannot bind.
func (m *Manager) checkPorts(in []*runtimeapi.PortMapping, ownNet bool) ([]PortMapping, error) {
	var out []PortMapping
	for _, pm := range in {
		if pm.GetHostPort() <= 0 {
			continue
		}
		var proto string
		switch pm.GetProtocol() {
		case runtimeapi.Protocol_TCP:
			proto = "tcp"
		case runtimeapi.Protocol_UDP:
			proto = "udp"
		default:
			return nil, fmt.Errorf("%w: host port %d: protocol %s is not supported (tcp, udp)", errdefs.ErrInvalidArgument, pm.GetHostPort(), pm.GetProtocol())
		}
		if pm.GetHostPort() > 65535 || pm.GetContainerPort() <= 0 || pm.GetContainerPort() > 65535 {
			return nil, fmt.Errorf("%w: port mapping %d→%d is out of range", errdefs.ErrInvalidArgument, pm.GetHostPort(), pm.GetContainerPort())
		}
		if m.opts.Rootless && int(pm.GetHostPort()) < m.opts.UnprivilegedPortStart {
			return nil, fmt.Errorf("%w: host port %d/%s is below the host's net.ipv4.ip_unprivileged_port_start (%d): rootless crib cannot bind it; use a port >= %d or lower that sysctl on the host",
				errdefs.ErrPermissionDenied, pm.GetHostPort(), proto, m.opts.UnprivilegedPortStart, m.opts.UnprivilegedPortStart)
		}
		out = append(out, PortMapping{
			Protocol: proto, HostIP: pm.GetHostIp(), HostPort: int(pm.GetHostPort()),
			ContainerPort: int(pm.GetContainerPort()),
		})
	}
	return out, nil
}
