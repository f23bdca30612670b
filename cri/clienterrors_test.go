package cri

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/sandbox"
)

// maxMessage bounds an error message crib sends back: whatever the client
// sent, a refusal repeats only a capped quote of it.
const maxMessage = 1024

func podCfg(name string, edit func(*runtimeapi.PodSandboxConfig)) *runtimeapi.PodSandboxConfig {
	c := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name[:min(len(name), 40)]},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{}}},
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func ctrCfg(name string, edit func(*runtimeapi.ContainerConfig)) *runtimeapi.ContainerConfig {
	c := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sleep", "1000"},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func TestClientErrors(t *testing.T) {
	profiles := t.TempDir()
	// A directory where a profile file is expected: unreadable as a
	// profile for any user, root included.
	if err := os.Mkdir(filepath.Join(profiles, "dir.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	hostDir := t.TempDir()
	e := newFakeEnv(t, profiles)
	e.pods.add(&sandbox.Sandbox{ID: "pod2", State: sandbox.StateReady, Config: podCfg("other", nil)})
	rs := e.client(t)

	mib := strings.Repeat("n", 1<<20)
	runp := func(cfg *runtimeapi.PodSandboxConfig) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			return err
		}
	}
	runpHandler := func(h string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg("handler", nil), RuntimeHandler: h})
			return err
		}
	}
	nsMode := func(set func(*runtimeapi.NamespaceOption)) func(*runtimeapi.PodSandboxConfig) {
		return func(c *runtimeapi.PodSandboxConfig) { set(c.Linux.SecurityContext.NamespaceOptions) }
	}
	create := func(pod string, cfg *runtimeapi.ContainerConfig, podConfig *runtimeapi.PodSandboxConfig) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podConfig})
			return err
		}
	}
	inPod1 := func(cfg *runtimeapi.ContainerConfig) func(context.Context) error { return create("pod1", cfg, nil) }
	mount := func(dst string) func(*runtimeapi.ContainerConfig) {
		return func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: dst, HostPath: hostDir}}
		}
	}
	seccomp := func(ref string) func(*runtimeapi.ContainerConfig) {
		return func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}
		}
	}
	privileged := func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext.Privileged = true }
	privilegedPod := podCfg("web", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.Privileged = true
		c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
	})
	execSync := func(cmd ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "nope", Cmd: cmd})
			return err
		}
	}
	exec := func(cmd ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "nope", Cmd: cmd, Stdout: true})
			return err
		}
	}
	portForward := func(pod string, ports ...int32) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: pod, Port: ports})
			return err
		}
	}
	podCIDR := func(cidr string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
				NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}})
			return err
		}
	}
	start := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		}
	}

	tests := []struct {
		name string
		call func(context.Context) error
		want codes.Code
	}{
		// RunPodSandbox
		{"pod: no config", runp(nil), codes.InvalidArgument},
		{"pod: no uid", runp(&runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Namespace: "b"}}), codes.InvalidArgument},
		{"pod: 1 MiB name", runp(podCfg(mib, nil)), codes.InvalidArgument},
		{"pod: name of 254 bytes", runp(podCfg(strings.Repeat("a", 254), nil)), codes.InvalidArgument},
		{"pod: name of 253 bytes", runp(podCfg(strings.Repeat("b", 253), nil)), codes.OK},
		{"pod: namespace of 64 bytes", runp(podCfg("ns64", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = strings.Repeat("n", 64) })), codes.InvalidArgument},
		{"pod: NUL in name", runp(podCfg("we\x00b", nil)), codes.InvalidArgument},
		{"pod: NUL in log directory", runp(podCfg("logdir", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/var/log/\x00x" })), codes.InvalidArgument},
		{"pod: hostname of 65 bytes", runp(podCfg("host65", func(c *runtimeapi.PodSandboxConfig) { c.Hostname = strings.Repeat("h", 65) })), codes.InvalidArgument},
		{"pod: hostname of 64 bytes", runp(podCfg("host64", func(c *runtimeapi.PodSandboxConfig) { c.Hostname = strings.Repeat("h", 64) })), codes.OK},
		{"pod: host_ip not an IP", runp(podCfg("hostip", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{HostIp: "not-an-ip", HostPort: 8080, ContainerPort: 80}}
		})), codes.InvalidArgument},
		{"pod: host_ip 127.0.0.1", runp(podCfg("hostip-ok", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{HostIp: "127.0.0.1", HostPort: 8080, ContainerPort: 80}}
		})), codes.OK},
		{"pod: network mode TARGET", runp(podCfg("net-target", nsMode(func(n *runtimeapi.NamespaceOption) { n.Network = runtimeapi.NamespaceMode_TARGET }))), codes.InvalidArgument},
		{"pod: pid mode TARGET", runp(podCfg("pid-target", nsMode(func(n *runtimeapi.NamespaceOption) { n.Pid = runtimeapi.NamespaceMode_TARGET }))), codes.InvalidArgument},
		{"pod: ipc mode 7", runp(podCfg("ipc-7", nsMode(func(n *runtimeapi.NamespaceOption) { n.Ipc = 7 }))), codes.InvalidArgument},
		{"pod: user mode TARGET", runp(podCfg("user-target", nsMode(func(n *runtimeapi.NamespaceOption) {
			n.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}
		}))), codes.InvalidArgument},
		{"pod: pid mode CONTAINER (the kubelet's default)", runp(podCfg("pid-container", nsMode(func(n *runtimeapi.NamespaceOption) { n.Pid = runtimeapi.NamespaceMode_CONTAINER }))), codes.OK},
		{"pod: unknown runtime handler of 1 MiB", runpHandler(mib), codes.InvalidArgument},

		// CreateContainer
		{"ctr: 200 KiB name", inPod1(ctrCfg(strings.Repeat("c", 200<<10), nil)), codes.InvalidArgument},
		{"ctr: name of 254 bytes", inPod1(ctrCfg(strings.Repeat("c", 254), nil)), codes.InvalidArgument},
		{"ctr: name of 85 bytes (critest)", inPod1(ctrCfg(strings.Repeat("d", 85), nil)), codes.OK},
		{"ctr: NUL in name", inPod1(ctrCfg("a\x00b", nil)), codes.InvalidArgument},
		{"ctr: NUL in command", inPod1(ctrCfg("nulcmd", func(c *runtimeapi.ContainerConfig) { c.Command = []string{"/bin/sh\x00x"} })), codes.InvalidArgument},
		{"ctr: NUL in args", inPod1(ctrCfg("nularg", func(c *runtimeapi.ContainerConfig) { c.Args = []string{"-c", "a\x00"} })), codes.InvalidArgument},
		{"ctr: NUL in env", inPod1(ctrCfg("nulenv", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("x\x00y")}}
		})), codes.InvalidArgument},
		{"ctr: mount onto /", inPod1(ctrCfg("m-root", mount("/"))), codes.InvalidArgument},
		{"ctr: mount onto //", inPod1(ctrCfg("m-root2", mount("//."))), codes.InvalidArgument},
		{"ctr: mount onto /proc", inPod1(ctrCfg("m-proc", mount("/proc"))), codes.InvalidArgument},
		{"ctr: mount onto /proc/sys", inPod1(ctrCfg("m-procsys", mount("/proc/sys"))), codes.InvalidArgument},
		{"ctr: mount onto /data", inPod1(ctrCfg("m-data", mount("/data"))), codes.OK},
		{"ctr: seccomp profile unreadable", inPod1(ctrCfg("sc-dir", seccomp("dir.json"))), codes.InvalidArgument},
		{"ctr: seccomp profile missing", inPod1(ctrCfg("sc-missing", seccomp("missing.json"))), codes.InvalidArgument},
		{"ctr: privileged in a non-privileged pod", inPod1(ctrCfg("priv", privileged)), codes.InvalidArgument},
		{"ctr: privileged, request claims a privileged pod", create("pod1", ctrCfg("priv-claim", privileged), privilegedPod), codes.InvalidArgument},
		{"ctr: pid mode 9", inPod1(ctrCfg("pid9", func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: 9}
		})), codes.InvalidArgument},
		{"ctr: unknown pod", create("nopod", ctrCfg("c1", nil), nil), codes.NotFound},
		{"ctr: ambiguous pod prefix", create("pod", ctrCfg("c2", nil), nil), codes.InvalidArgument},
		{"ctr: empty pod id", create("", ctrCfg("c3", nil), nil), codes.InvalidArgument},
		{"ctr: image not pulled", inPod1(ctrCfg("noimg", func(c *runtimeapi.ContainerConfig) { c.Image.Image = "nginx" })), codes.NotFound},

		// Exec, ExecSync
		{"execsync: NUL in command", execSync("ls\x00"), codes.InvalidArgument},
		{"execsync: empty command", execSync(), codes.InvalidArgument},
		{"execsync: unknown container", execSync("ls"), codes.NotFound},
		{"exec: NUL in command", exec("sh", "-c", "\x00"), codes.InvalidArgument},

		// PortForward
		{"portforward: unknown pod", portForward("nopod", 80), codes.NotFound},
		{"portforward: 1 MiB pod id", portForward(mib, 80), codes.NotFound},
		{"portforward: ambiguous pod prefix", portForward("pod", 80), codes.InvalidArgument},
		{"portforward: port 70000", portForward("pod1", 70000), codes.InvalidArgument},
		{"portforward: ready pod", portForward("pod1", 80), codes.OK},

		// UpdateRuntimeConfig
		{"runtimeconfig: pod_cidr garbage/99", podCIDR("garbage/99"), codes.InvalidArgument},
		{"runtimeconfig: pod_cidr 10.0.0.0/33", podCIDR("10.0.0.0/33"), codes.InvalidArgument},
		{"runtimeconfig: dual-stack pod_cidr", podCIDR("10.88.0.0/16,fd00::/64"), codes.OK},
		{"runtimeconfig: empty pod_cidr", podCIDR(""), codes.OK},

		{"start: unknown container", start("nope"), codes.NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(context.Background())
			st, _ := status.FromError(err)
			if st.Code() != tc.want {
				t.Fatalf("got %v: %.300s, want %v", st.Code(), st.Message(), tc.want)
			}
			if len(st.Message()) > maxMessage {
				t.Fatalf("error message is %d bytes: %.300s…", len(st.Message()), st.Message())
			}
		})
	}
}
