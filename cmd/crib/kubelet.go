package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/cri"
	"github.com/crib-dev/crib/internal/config"
)

// kubeletHost is what a KubeletConfiguration for this crib depends on:
// read from the running crib and the host, so that a test can give any.
type kubeletHost struct {
	Socket       string // crib's CRI socket
	CgroupDriver string // "cgroupfs" or "systemd", as RuntimeConfig reports
	CgroupV1     bool   // the host mounts cgroup v1 (hybrid or legacy)
	Rootless     bool
	StaticPods   string // staticPodPath
	PodLogs      string // podLogsDir
	KubeletRoot  string // the kubelet's --root-dir, for volumePluginDir
	ClientCA     string // CA of clients (the API server) the kubelet's API accepts
	// UserNamespaces: crib's Status advertises pod user namespaces
	// (hostUsers: false).
	UserNamespaces bool
}

// kubeletPaths are the directories the kubelet of this crib uses: all on
// the host's filesystem and owned by the user, so manifests can be dropped
// in and logs read without entering crib's namespaces.
func kubeletPaths(cfg config.Config, env config.Env) (manifests, podLogs, root string) {
	if env.Rootful() {
		return "/etc/kubernetes/manifests", "/var/log/pods", "/var/lib/kubelet"
	}
	confDir := filepath.Dir(env.ConfigPath())
	return filepath.Join(confDir, "manifests"), filepath.Join(cfg.Root, "pod-logs"), filepath.Join(cfg.Root, "kubelet")
}

// kubeletYAML renders the KubeletConfiguration (kubelet.config.k8s.io
// v1beta1) for a kubelet run inside crib's namespaces.
func kubeletYAML(h kubeletHost) string {
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("# KubeletConfiguration for a kubelet on crib; written by 'crib kubelet-config'.")
	line("# Run the kubelet inside crib's namespaces: contrib/kubelet/crib-kubelet.sh,")
	line("# or: crib unshare kubelet --config THIS_FILE --root-dir %s", h.KubeletRoot)
	line("apiVersion: kubelet.config.k8s.io/v1beta1")
	line("kind: KubeletConfiguration")
	line("containerRuntimeEndpoint: unix://%s", h.Socket)
	line("imageServiceEndpoint: unix://%s", h.Socket)
	line("# The driver crib's RuntimeConfig reports.")
	line("cgroupDriver: %s", h.CgroupDriver)
	if h.CgroupV1 {
		line("# This host mounts cgroup v1, which the kubelet refuses unless told.")
		line("failCgroupV1: false")
	}
	line("staticPodPath: %s", h.StaticPods)
	line("fileCheckFrequency: 5s")
	line("podLogsDir: %s", h.PodLogs)
	line("volumePluginDir: %s", filepath.Join(h.KubeletRoot, "volume-plugins"))
	if h.Rootless {
		line("featureGates:")
		line("  # The kubelet runs as uid 0 of crib's user namespace: it tolerates the")
		line("  # sysctls, oom_score_adj and rlimits a user namespace may not set.")
		line("  KubeletInUserNamespace: true")
		line("# crib puts each pod in a cgroup of the subtree delegated to it; the")
		line("# kubelet cannot make QoS cgroups in the host's hierarchy.")
		line("cgroupsPerQOS: false")
		line("enforceNodeAllocatable: []")
		line("# cAdvisor collects filesystem usage only with this on (the kubelet")
		line("# asks the CRI, not cAdvisor, for container stats): off, the root")
		line("# filesystem has no stats, /stats/summary fails and eviction never runs.")
		line("localStorageCapacityIsolation: true")
		line("# The user namespace cannot change these.")
		line("failSwapOn: false")
		line("protectKernelDefaults: false")
	}
	if h.UserNamespaces {
		line("# Pods with hostUsers: false: crib nests their user namespace in its")
		line("# own and maps it from its range, 65536 ids a pod (crib doctor shows the")
		line("# room). The kubelet's range is user kubelet's subordinate ids, which")
		line("# crib writes into its own copy of /etc: crib's ids from 65536 up.")
		line("userNamespaces:")
		line("  idsPerPod: 65536")
	}
	line("# The kubelet's API listens in crib's network namespace only.")
	line("address: 127.0.0.1")
	line("healthzBindAddress: 127.0.0.1")
	line("readOnlyPort: 0")
	line("authentication:")
	if h.ClientCA != "" {
		line("  x509:")
		line("    clientCAFile: %s", h.ClientCA)
	}
	line("  anonymous:")
	line("    enabled: false")
	line("  webhook:")
	line("    enabled: true")
	line("authorization:")
	line("  mode: Webhook")
	return b.String()
}

func runKubeletConfig(ctx context.Context, cfg config.Config, fs *flag.FlagSet) error {
	if fs.NArg() != 0 {
		return errors.New("crib kubelet-config takes no arguments")
	}
	env := config.CurrentEnv()
	h, err := probeKubeletHost(ctx, cfg, env)
	if err != nil {
		return err
	}
	if ca := flagString(fs, "client-ca-file"); ca != "" {
		if h.ClientCA, err = filepath.Abs(ca); err != nil {
			return err
		}
	}
	yaml := kubeletYAML(h)
	if flagBool(fs, "standalone") {
		yaml = standaloneAuth(yaml)
	}
	return writeKubeletConfig(os.Stdout, yaml, flagBool(fs, "write"), flagString(fs, "file"), env, h)
}

// standaloneAuth lets anyone who reaches the kubelet's API, which only
// listens on crib's own loopback, use it: a standalone kubelet has no API
// server to ask.
func standaloneAuth(yaml string) string {
	i := strings.Index(yaml, "authentication:\n")
	return yaml[:i] + "# Standalone: no API server to authorize against; the API listens on\n" +
		"# crib's own loopback only.\n" +
		"authentication:\n  anonymous:\n    enabled: true\n  webhook:\n    enabled: false\n" +
		"authorization:\n  mode: AlwaysAllow\n"
}

// probeKubeletHost asks the running crib for its cgroup driver and the
// host for its cgroup version.
func probeKubeletHost(ctx context.Context, cfg config.Config, env config.Env) (kubeletHost, error) {
	driver, err := cri.RuntimeCgroupDriver(ctx, cfg.Listen)
	if err != nil {
		return kubeletHost{}, err
	}
	var st unix.Statfs_t
	v1 := unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type != unix.CGROUP2_SUPER_MAGIC
	manifests, podLogs, root := kubeletPaths(cfg, env)
	return kubeletHost{Socket: cfg.Listen, CgroupDriver: driver, CgroupV1: v1, Rootless: !env.Rootful(),
		StaticPods: manifests, PodLogs: podLogs, KubeletRoot: root, UserNamespaces: cri.RuntimeUserNamespaces(ctx, cfg.Listen)}, nil
}

// writeKubeletConfig prints yaml, or with write puts it in file (default
// kubelet.yaml beside crib's config) and makes the directories it names.
func writeKubeletConfig(stdout io.Writer, yaml string, write bool, file string, env config.Env, h kubeletHost) error {
	if !write {
		_, err := io.WriteString(stdout, yaml)
		return err
	}
	if file == "" {
		file = filepath.Join(filepath.Dir(env.ConfigPath()), "kubelet.yaml")
	}
	for _, dir := range []string{filepath.Dir(file), h.StaticPods, h.PodLogs, h.KubeletRoot} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		return fmt.Errorf("writing the kubelet's configuration: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s\nstatic pod manifests go in %s\n", file, h.StaticPods)
	return nil
}
