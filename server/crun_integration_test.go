//go:build integration

package server_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestIntegrationCrunHandler: a pod asking for the crun runtime handler
// gets its containers run by crun (runtime/oci's crun implementation),
// with exec and an ExecSync timeout, and leaves no crun state after
// removal. crib runs rootful, in a mount namespace of its own where a
// hybrid host's cgroup2 mount at /sys/fs/cgroup/unified is unmounted:
// crun 1.8 refuses hybrid hosts otherwise (on a pure cgroup v2 host
// crun runs as it is and the unmount does nothing). Pods are unconfined
// (--cgroup-manager none): crib's v1 cgroup paths are relative, which
// crun resolves from each hierarchy's root, not from crib's own cgroup.
func TestIntegrationCrunHandler(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	if _, err := exec.LookPath("crun"); err != nil {
		t.Skip("crun is not installed")
	}
	d := startRootfulCrun(t)
	c := d.clients(t)
	ctx := context.Background()
	st, err := c.rs.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(st.RuntimeHandlers, func(h *runtimeapi.RuntimeHandler) bool { return h.Name == "crun" }) {
		t.Fatalf("crun is not a runtime handler: %v\n%s", st.RuntimeHandlers, d.out)
	}
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	pcfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "crun", Namespace: "default", Uid: "crun-uid"},
		// The node's network: no CNI bridge in the machine's namespace.
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg, RuntimeHandler: "crun"})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.out)
	}
	cr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
			Image: &runtimeapi.ImageSpec{Image: "busybox"}, Command: []string{"sleep", "1000"}}})
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, d.out)
	}
	id := cr.ContainerId
	if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v\n%s", err, d.out)
	}
	checkStateDir(t, d, id, true)
	checkCrunExec(t, c, id)
	if _, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	checkStateDir(t, d, id, false)
}

// checkStateDir: the container's runtime state is crun's, under crib's
// runroot, and only while it exists.
func checkStateDir(t *testing.T, d *daemon, id string, want bool) {
	t.Helper()
	_, err := os.Stat(filepath.Join(d.runroot, "crun", id))
	if (err == nil) != want {
		t.Errorf("crun state of %s present=%t, want %t", id, err == nil, want)
	}
	if _, err := os.Stat(filepath.Join(d.runroot, "runc", id)); err == nil {
		t.Errorf("runc holds state of %s", id)
	}
}

func checkCrunExec(t *testing.T, c criClients, id string) {
	t.Helper()
	ctx := context.Background()
	res, err := c.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo hello; exit 3"}, Timeout: 10})
	if err != nil || string(res.Stdout) != "hello\n" || res.ExitCode != 3 {
		t.Fatalf("ExecSync: %v %+v", err, res)
	}
	_, err = c.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "30"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("ExecSync past its timeout: %v, want DeadlineExceeded", err)
	}
	res, err = c.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"ps", "-o", "args"}, Timeout: 10})
	if err != nil || strings.Contains(string(res.Stdout), "sleep 30") {
		t.Errorf("the timed-out command is left: %v\n%s", err, res.GetStdout())
	}
}

// startRootfulCrun starts crib as root in its own mount namespace without
// the hybrid host's cgroup2 mount, and waits until it serves.
func startRootfulCrun(t *testing.T) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{root: filepath.Join(dir, "root"), runroot: filepath.Join(dir, "run"), out: &bytes.Buffer{}}
	d.socket = filepath.Join(d.runroot, "crib.sock")
	args := d.args("--cgroup-manager", "none", "--default-runtime", "runc",
		"--registries-conf", "../conformance/registries.conf", "--signature-policy", "../conformance/policy.json")
	d.cmd = exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c",
		`umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"`, "sh"}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() { d.removeAllPods(); d.stop(t) })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if cc, err := grpcDial(d.socket); err == nil {
			_, verr := runtimeapi.NewRuntimeServiceClient(cc).Version(context.Background(), &runtimeapi.VersionRequest{})
			cc.Close()
			if verr == nil {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rootful crib did not serve:\n%s", d.out)
		}
	}
}
