//go:build integration

package server_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// crun wherever it runs (issue 16): on a hybrid cgroup host, where crun
// refuses the host's own /sys/fs/cgroup, crib's namespaces show a v1-only
// view and crun is the default handler; its containers get their limits
// in the delegated subtree, as runc's do, and runc stays a handler.
func TestIntegrationCrunOnHybridHost(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup/unified", &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skip("not a hybrid cgroup host")
	}
	if _, err := exec.LookPath("crun"); err != nil {
		t.Skip("crun is not installed")
	}
	u := lookupTestUser(t)
	cg := delegateCgroups(t, u)
	d := newDaemon(t, u)
	d.extra = []string{"--cgroup-parent", cg.parent}
	d.startWithRegistry(t)
	c := d.clients(t)
	ctx := context.Background()
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}

	t.Run("crictl info names crun the default and says why", func(t *testing.T) {
		s, err := c.rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		var note struct {
			Handlers      []string `json:"handlers"`
			Default       string   `json:"default"`
			DefaultReason string   `json:"defaultReason"`
		}
		if err := json.Unmarshal([]byte(s.Info["runtime"]), &note); err != nil {
			t.Fatalf("Status info %q: %v", s.Info["runtime"], err)
		}
		if note.Default != "crun" || !slices.Equal(note.Handlers, []string{"crun", "runc"}) || !strings.Contains(note.DefaultReason, "hides cgroup2") {
			t.Fatalf("runtime note %+v, want crun the default of crun, runc, because the view hides cgroup2", note)
		}
	})

	t.Run("crib's namespaces show no cgroup2 under /sys/fs/cgroup", func(t *testing.T) {
		out, err := d.unshareCmd("test -e /sys/fs/cgroup/unified && echo shown; test -d /sys/fs/cgroup/memory && echo memory").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "memory" {
			t.Fatalf("crib unshare: %v\n%s", err, out)
		}
	})

	const limit = 64 << 20
	for _, handler := range []string{"", "runc"} {
		name := handler
		if name == "" {
			name = "default"
		}
		t.Run("a limited container with the "+name+" handler", func(t *testing.T) {
			pod, ctr := limitedContainer(t, c, "view-"+name, handler, limit)
			runner := handler
			if runner == "" {
				runner = "crun"
			}
			if _, err := os.Stat(filepath.Join(d.runroot, runner, ctr)); err != nil {
				t.Errorf("no %s state for the container: %v", runner, err)
			}
			if out, code := podSh(t, c, ctr, "echo hi"); out != "hi" || code != 0 {
				t.Errorf("exec: %q exit %d", out, code)
			}
			memory := cg.dirs[slices.IndexFunc(cg.dirs, func(d string) bool { return strings.Contains(d, "/memory/") })]
			file := filepath.Join(memory, "crib-pod-"+pod, "crib-"+ctr, "memory.limit_in_bytes")
			data, err := os.ReadFile(file)
			if got, _ := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || got != limit {
				t.Errorf("%s: %q %v, want %d", file, data, err, limit)
			}
			if _, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// limitedContainer runs a pod with the runtime handler and in it a
// sleeping container with a memory limit.
func limitedContainer(t *testing.T, c criClients, name, handler string, limit int64) (podID, ctrID string) {
	t.Helper()
	ctx := context.Background()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name + "-uid"},
		Hostname: name,
	}
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", name, err)
	}
	ctr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
		Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
		Command:  []string{"sleep", "3601"},
		Linux:    &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: limit}},
	}})
	if err != nil {
		t.Fatalf("CreateContainer in %s: %v", name, err)
	}
	if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("StartContainer in %s: %v", name, err)
	}
	return pod.PodSandboxId, ctr.ContainerId
}
