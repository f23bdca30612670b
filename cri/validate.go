package cri

import (
	"net/netip"
	"path"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Request checks that run before anything is created. A request that fails
// them can never succeed as written, so the answer is InvalidArgument, and
// the message repeats at most errdefs.Quote's share of the client's input.

// Name limits as Kubernetes sets them: a pod name is a DNS subdomain, a
// namespace a DNS label. Container names are DNS labels in Kubernetes, but
// critest (a CRI client, not the API server) sends names of ~85 bytes, so
// the CRI layer holds them to the subdomain limit.
const (
	dnsLabelMax     = 63
	dnsSubdomainMax = 253
	// hostnameMax is the kernel's HOST_NAME_MAX: sethostname refuses more.
	hostnameMax = 64
)

func validatePodConfig(cfg *runtimeapi.PodSandboxConfig) error {
	if cfg == nil {
		return invalid("pod sandbox config is missing")
	}
	m := cfg.GetMetadata()
	if m == nil || m.GetName() == "" || m.GetNamespace() == "" || m.GetUid() == "" {
		return invalid("pod sandbox metadata needs a name, namespace and uid")
	}
	for _, f := range []struct {
		what, value string
		max         int
	}{
		{"pod name", m.GetName(), dnsSubdomainMax},
		{"pod namespace", m.GetNamespace(), dnsLabelMax},
		{"pod uid", m.GetUid(), dnsSubdomainMax},
		{"hostname", cfg.GetHostname(), hostnameMax},
	} {
		if err := checkName(f.what, f.value, f.max); err != nil {
			return err
		}
	}
	if err := checkText("log directory", cfg.GetLogDirectory()); err != nil {
		return err
	}
	if err := checkPodNamespaces(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()); err != nil {
		return err
	}
	for _, pm := range cfg.GetPortMappings() {
		if ip := pm.GetHostIp(); ip != "" {
			if _, err := netip.ParseAddr(ip); err != nil {
				return invalid("port mapping host_ip %s is not an IP address", errdefs.Quote(ip))
			}
		}
	}
	return nil
}

// checkPodNamespaces refuses the modes a pod cannot have: TARGET names a
// container, which only a container's own options may do, and a value
// outside the enum is a client bug.
func checkPodNamespaces(ns *runtimeapi.NamespaceOption) error {
	modes := []struct {
		what string
		mode runtimeapi.NamespaceMode
	}{
		{"network", ns.GetNetwork()},
		{"pid", ns.GetPid()},
		{"ipc", ns.GetIpc()},
	}
	if u := ns.GetUsernsOptions(); u != nil {
		modes = append(modes, struct {
			what string
			mode runtimeapi.NamespaceMode
		}{"user", u.GetMode()})
	}
	for _, m := range modes {
		if _, known := runtimeapi.NamespaceMode_name[int32(m.mode)]; !known {
			return invalid("pod %s namespace mode %d is not a namespace mode", m.what, m.mode)
		}
		if m.mode == runtimeapi.NamespaceMode_TARGET {
			return invalid("pod %s namespace mode TARGET is only for a container's namespaces", m.what)
		}
	}
	return checkUserns(ns)
}

// minPodIDs is the smallest user-namespace mapping a pod may ask for: the
// kubelet's idsPerPod is a multiple of 65536, and images own files up to
// 65535 (critest asks for 100000).
const minPodIDs = 65536

// checkUserns refuses the user namespaces crib cannot give: a mode other
// than NODE or POD, and for POD anything but the one mapping per kind the
// kubelet sends (container id 0 onwards, at least minPodIDs ids, the same
// count for uids and gids) next to a pod that shares none of the node's
// namespaces. Whether the host ids fit crib's own range is the sandbox's
// check: only it knows the range.
func checkUserns(ns *runtimeapi.NamespaceOption) error {
	u := ns.GetUsernsOptions()
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		return nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return invalid("pod user namespace mode %s: only NODE and POD are supported", u.GetMode())
	}
	if len(u.GetUids()) == 0 && len(u.GetGids()) == 0 {
		return nil // POD is the enum's zero: no options at all means the node's
	}
	if len(u.GetUids()) != 1 || len(u.GetGids()) != 1 {
		return invalid("pod user namespace: want exactly one uid and one gid mapping, got %d and %d", len(u.GetUids()), len(u.GetGids()))
	}
	uid, gid := u.GetUids()[0], u.GetGids()[0]
	for _, m := range []struct {
		what string
		m    *runtimeapi.IDMapping
	}{{"uid", uid}, {"gid", gid}} {
		if m.m.GetContainerId() != 0 {
			return invalid("pod user namespace: the %s mapping must start at container id 0, not %d", m.what, m.m.GetContainerId())
		}
		if m.m.GetLength() < minPodIDs {
			return invalid("pod user namespace: the %s mapping has %d ids, want at least %d", m.what, m.m.GetLength(), minPodIDs)
		}
	}
	if uid.GetLength() != gid.GetLength() {
		return invalid("pod user namespace: %d uids but %d gids", uid.GetLength(), gid.GetLength())
	}
	for _, n := range []struct {
		what string
		mode runtimeapi.NamespaceMode
	}{{"network", ns.GetNetwork()}, {"pid", ns.GetPid()}, {"ipc", ns.GetIpc()}} {
		if n.mode == runtimeapi.NamespaceMode_NODE {
			return invalid("pod user namespace: a pod in its own user namespace cannot use the node's %s namespace", n.what)
		}
	}
	return nil
}

func validateContainerConfig(cfg *runtimeapi.ContainerConfig) error {
	if cfg == nil {
		return invalid("container config is missing")
	}
	if cfg.GetMetadata().GetName() == "" {
		return invalid("container metadata needs a name")
	}
	if err := checkName("container name", cfg.GetMetadata().GetName(), dnsSubdomainMax); err != nil {
		return err
	}
	if strings.TrimSpace(cfg.GetImage().GetImage()) == "" {
		return invalid("container image is empty")
	}
	var env []string
	for _, kv := range cfg.GetEnvs() {
		env = append(env, kv.GetKey(), string(kv.GetValue()))
	}
	for _, f := range []struct {
		what   string
		values []string
	}{
		{"image", []string{cfg.GetImage().GetImage()}},
		{"command", cfg.GetCommand()},
		{"args", cfg.GetArgs()},
		{"working directory", []string{cfg.GetWorkingDir()}},
		{"log path", []string{cfg.GetLogPath()}},
		{"environment", env},
	} {
		for _, v := range f.values {
			if err := checkText(f.what, v); err != nil {
				return err
			}
		}
	}
	for _, m := range cfg.GetMounts() {
		if err := checkMount(m); err != nil {
			return err
		}
	}
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if _, known := runtimeapi.NamespaceMode_name[int32(ns.GetPid())]; !known {
		return invalid("container pid namespace mode %d is not a namespace mode", ns.GetPid())
	}
	return nil
}

// checkMount refuses destinations that would replace what the container
// stands on: "/" (runc would then build the container's /dev skeleton
// inside the host directory) and /proc, which hides the container's own
// procfs and its masked paths.
func checkMount(m *runtimeapi.Mount) error {
	if err := checkText("mount container_path", m.GetContainerPath()); err != nil {
		return err
	}
	if err := checkText("mount host_path", m.GetHostPath()); err != nil {
		return err
	}
	dst := m.GetContainerPath()
	if dst == "" {
		return invalid("mount of %s has no container_path", errdefs.Quote(m.GetHostPath()))
	}
	clean := path.Clean("/" + dst)
	if clean == "/" || clean == "/proc" || strings.HasPrefix(clean, "/proc/") {
		return invalid("mount container_path %s would cover the container's root or /proc", errdefs.Quote(dst))
	}
	return nil
}

// validateCmd checks a command for ExecSync and Exec.
func validateCmd(cmd []string) error {
	if len(cmd) == 0 {
		return invalid("exec command is empty")
	}
	for _, arg := range cmd {
		if err := checkText("command", arg); err != nil {
			return err
		}
	}
	return nil
}

// validatePodCIDR accepts what the kubelet sends: empty, or one CIDR per
// IP family separated by commas.
func validatePodCIDR(s string) error {
	if s == "" {
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		if _, err := netip.ParsePrefix(strings.TrimSpace(part)); err != nil {
			return invalid("pod CIDR %s is not a CIDR (want e.g. 10.88.0.0/16)", errdefs.Quote(s))
		}
	}
	return nil
}

func checkName(what, value string, max int) error {
	if len(value) > max {
		return invalid("%s %s is %d bytes long, more than %d", what, errdefs.Quote(value), len(value), max)
	}
	return checkText(what, value)
}

// checkText refuses a NUL byte: no kernel interface (argv, environ, paths)
// can carry one, so the value would be silently cut.
func checkText(what, value string) error {
	if strings.IndexByte(value, 0) >= 0 {
		return invalid("%s %s contains a NUL byte", what, errdefs.Quote(value))
	}
	return nil
}
