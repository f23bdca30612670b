//go:build integration

package server_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestIntegrationNRIPlugin runs a real NRI plugin (testdata/nriplugin, on
// the nri module's stub) as a pre-installed plugin of a rootless crib: its
// adjustment reaches the running container, it sees the events in NRI's
// order, it runs as crib's user inside crib's user namespace, and an
// adjustment a rootless crib cannot apply fails CreateContainer naming
// the plugin.
func TestIntegrationNRIPlugin(t *testing.T) {
	d, dir := startWithNRIPlugins(t, nil)
	events := filepath.Join(dir, "events.log")
	c := d.clients(t)
	ctx := context.Background()

	st, err := os.Stat(filepath.Join(d.runroot, "nri.sock"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("NRI socket: %v, mode %v; want 0600", err, st)
	}
	info, err := c.rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	// Parsed, not matched as text: crib may re-encode the config with its
	// keys in another order (server/userns.go adds stateDir).
	var shown struct {
		NRI struct {
			Enable     bool   `json:"enable"`
			SocketPath string `json:"socket_path"`
		} `json:"nri"`
	}
	if err == nil {
		err = json.Unmarshal([]byte(info.GetInfo()["config"]), &shown)
	}
	if err != nil || !shown.NRI.Enable || shown.NRI.SocketPath != filepath.Join(d.runroot, "nri.sock") {
		t.Errorf("crictl info does not show the [nri] section: %v %s", err, info.GetInfo()["config"])
	}
	pcfg, pod, ctr := runSleeper(ctx, t, d, c, "nri-pod")
	r, err := c.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"sh", "-c", "echo $NRI_ADJUSTED"}, Timeout: 10})
	if err != nil || strings.TrimSpace(string(r.Stdout)) != "by-10-adjuster" {
		t.Fatalf("the plugin's environment is not in the running container: %v %q %q", err, r.GetStdout(), r.GetStderr())
	}

	_, err = c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "wants-mem"},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Command:  []string{"sleep", "1000"},
		}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "10-adjuster") || !strings.Contains(err.Error(), "/dev/mem") {
		t.Fatalf("a rootless-impossible device was not refused naming the plugin: %v", err)
	}

	for _, step := range []func() error{
		func() error {
			_, err := c.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr.ContainerId})
			return err
		},
		func() error {
			_, err := c.rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr.ContainerId})
			return err
		},
		func() error {
			_, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
			return err
		},
		func() error {
			_, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
			return err
		},
	} {
		if err := step(); err != nil {
			t.Fatalf("%v\n%s", err, d.out)
		}
	}

	data, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	hostNS, _ := os.Readlink("/proc/self/ns/user")
	if !strings.HasPrefix(lines[0], "Configure uid=0 userns=") || strings.HasSuffix(lines[0], hostNS) {
		t.Errorf("the plugin does not run as root of crib's user namespace: %q (host %s)", lines[0], hostNS)
	}
	want := []string{"RunPodSandbox nri-pod", "CreateContainer app", "StartContainer app", "CreateContainer wants-mem",
		"StopContainer app", "RemoveContainer app", "StopPodSandbox nri-pod", "RemovePodSandbox nri-pod"}
	if got := lines[1:]; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("plugin events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// startWithNRIPlugins starts crib with NRI on and, in its plugin
// directory, testdata/nriplugin as 10-adjuster (logging to events.log in
// the returned directory) plus the plugins extra names (file name →
// binary, with an optional configuration).
func startWithNRIPlugins(t *testing.T, extra map[string]nriPlugin) (*daemon, string) {
	t.Helper()
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	dir, err := os.MkdirTemp("", "crib-it-nri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	plugins, conf := filepath.Join(dir, "plugins"), filepath.Join(dir, "conf.d")
	for _, p := range []string{plugins, conf} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command(filepath.Join(goruntime.GOROOT(), "bin", "go"), "build", "-buildvcs=false", "-o", filepath.Join(plugins, "10-adjuster"), "./testdata/nriplugin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	events := filepath.Join(dir, "events.log")
	if err := os.WriteFile(events, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(events, 0o666) // the plugin is crib's user, not root
	if err := os.WriteFile(filepath.Join(conf, "10-adjuster.conf"), []byte(events+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, p := range extra {
		if out, err := exec.Command("install", "-m", "0755", p.bin, filepath.Join(plugins, name)).CombinedOutput(); err != nil {
			t.Fatalf("installing %s: %v\n%s", name, err, out)
		}
		if err := os.WriteFile(filepath.Join(conf, name+".conf"), []byte(p.conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.extra = append(d.extra, "--nri=true", "--nri-plugin-dir", plugins, "--nri-plugin-config-dir", conf)
	d.startWithRegistry(t)
	return d, dir
}

type nriPlugin struct{ bin, conf string }

// TestIntegrationNRISampleLogger runs the nri repository's own sample
// logger (plugins/logger, a module of its own that the Go module proxy
// does not serve) when NRI_LOGGER_BIN names a build of it: its
// environment adjustment must reach the running container.
func TestIntegrationNRISampleLogger(t *testing.T) {
	bin := os.Getenv("NRI_LOGGER_BIN")
	if bin == "" {
		t.Skip("NRI_LOGGER_BIN is not set (a build of github.com/containerd/nri/plugins/logger)")
	}
	conf := "addEnv: LOGGER_ENV\nevents: [RunPodSandbox, CreateContainer, StartContainer, StopContainer, RemoveContainer]\n"
	d, _ := startWithNRIPlugins(t, map[string]nriPlugin{"05-logger": {bin: bin, conf: conf}})
	c := d.clients(t)
	ctx := context.Background()
	_, _, ctr := runSleeper(ctx, t, d, c, "logger-pod")
	r, err := c.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"sh", "-c", "echo $LOGGER_ENV"}, Timeout: 10})
	if err != nil || !strings.HasPrefix(string(r.Stdout), "logger-pid-") {
		t.Fatalf("the logger's environment is not in the running container: %v %q\n%s", err, r.GetStdout(), d.out)
	}
}

// runSleeper pulls busybox and runs a pod with one container that sleeps,
// failing the test with crib's output when a step fails.
func runSleeper(ctx context.Context, t *testing.T, d *daemon, c criClients, name string) (*runtimeapi.PodSandboxConfig, *runtimeapi.RunPodSandboxResponse, *runtimeapi.CreateContainerResponse) {
	t.Helper()
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	pcfg := podConfig(name, freeHostPort(t), "")
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.out)
	}
	ctr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
			Command:  []string{"sleep", "1000"},
		}})
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, d.out)
	}
	if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v\n%s", err, d.out)
	}
	return pcfg, pod, ctr
}
