//go:build integration

package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pods and containers against a real rootless crib: the CRI calls a
// kubelet makes, a host port reached from the host, events, and a crib
// killed with SIGKILL and restarted while its pod keeps running.

func (d *daemon) startWithRegistry(t *testing.T) {
	t.Helper()
	// Readable by the test user, unlike t.TempDir's 0700 parent.
	dir, err := os.MkdirTemp("", "crib-it-conf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	for _, f := range []string{"registries.conf", "policy.json"} {
		data, err := os.ReadFile(filepath.Join("../conformance", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.extra = append(d.extra, "--registries-conf", filepath.Join(dir, "registries.conf"), "--signature-policy", filepath.Join(dir, "policy.json"))
	d.start(t)
}

type criClients struct {
	rs runtimeapi.RuntimeServiceClient
	is runtimeapi.ImageServiceClient
}

func (d *daemon) clients(t *testing.T) criClients {
	c, err := grpcDial(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return criClients{rs: runtimeapi.NewRuntimeServiceClient(c), is: runtimeapi.NewImageServiceClient(c)}
}

func freeHostPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func podConfig(name string, hostPort int, logDir string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: logDir,
		PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: int32(hostPort)}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func webContainer() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "web"},
		Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
		Command:  []string{"sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html && echo started && exec httpd -f -p 8080 -h /www"},
		LogPath:  "web.log",
	}
}

func TestIntegrationPodLifecycle(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.startWithRegistry(t)
	c := d.clients(t)
	ctx := context.Background()
	outer := t // connections made in subtests must outlive them

	events, err := c.rs.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// A subscriber that never reads must not hold crib up.
	slowCtx, cancelSlow := context.WithCancel(ctx)
	defer cancelSlow()
	if _, err := c.rs.GetContainerEvents(slowCtx, &runtimeapi.GetEventsRequest{}); err != nil {
		t.Fatal(err)
	}

	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	logDir := filepath.Join(u.home, "it-logs-"+filepath.Base(d.runroot))
	defer os.RemoveAll(logDir)
	hostPort := freeHostPort(t)
	pcfg := podConfig("web", hostPort, logDir)
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.out)
	}
	podID := pod.PodSandboxId

	t.Run("same pod metadata twice is refused naming the pod", func(t *testing.T) {
		_, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
		if err == nil || !strings.Contains(err.Error(), podID) {
			t.Fatalf("second RunPodSandbox: %v", err)
		}
	})

	st, err := c.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Status.Network.GetIp() == "" {
		t.Fatalf("pod status: %v %v", st, err)
	}

	ctr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: webContainer(), SandboxConfig: pcfg})
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, d.out)
	}
	if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}

	t.Run("host port reachable from the host", func(t *testing.T) {
		body := httpGetRetry(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort))
		if !strings.Contains(body, "hello-from-pod") {
			t.Fatalf("host port answered %q", body)
		}
	})

	var layer uint64 // the writable layer's size before the restart
	t.Run("exec, logs and stats", func(t *testing.T) {
		r, err := c.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"hostname"}, Timeout: 10})
		if err != nil || strings.TrimSpace(string(r.Stdout)) != "web" {
			t.Fatalf("exec hostname: %v %q", err, r.GetStdout())
		}
		logData, err := os.ReadFile(filepath.Join(logDir, "web.log"))
		if err != nil || !strings.Contains(string(logData), "stdout F started") {
			t.Fatalf("CRI log: %v %q", err, logData)
		}
		cs, err := c.rs.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctr.ContainerId})
		if err != nil || cs.Stats.GetMemory().GetWorkingSetBytes().GetValue() == 0 {
			t.Fatalf("container stats: %v %v", cs, err)
		}
		// The container wrote /www/index.html into its writable layer.
		if layer = cs.Stats.GetWritableLayer().GetUsedBytes().GetValue(); layer == 0 {
			t.Fatalf("container stats: writable layer 0: %v", cs.Stats.GetWritableLayer())
		}
		ps, err := c.rs.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
		if err != nil || ps.Stats.GetLinux() == nil {
			t.Fatalf("pod stats: %v %v", ps, err)
		}
	})

	t.Run("crib killed with SIGKILL and restarted keeps the pod", func(t *testing.T) {
		d.cmd.Process.Kill()
		<-d.exited
		d.cmd = nil
		d.start(t)
		c = d.clients(outer)
		ls, err := c.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil || len(ls.Containers) != 1 || ls.Containers[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("containers after restart: %v %v\n%s", ls, err, d.out)
		}
		r, err := c.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"true"}, Timeout: 10})
		if err != nil || r.ExitCode != 0 {
			t.Fatalf("exec after restart: %v %v", r, err)
		}
		cs, err := c.rs.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctr.ContainerId})
		if err != nil || cs.Stats.GetWritableLayer().GetUsedBytes().GetValue() != layer {
			t.Fatalf("writable layer after restart: %v %v, want %d bytes as before", cs.GetStats().GetWritableLayer(), err, layer)
		}
		body := httpGetRetry(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort))
		if !strings.Contains(body, "hello-from-pod") {
			t.Fatalf("host port after restart answered %q", body)
		}
	})

	t.Run("stop and remove are idempotent", func(t *testing.T) {
		for range 2 {
			if _, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if _, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: "not-a-container"}); err != nil {
			t.Fatalf("stop of unknown container: %v", err)
		}
		ls, _ := c.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if len(ls.GetContainers()) != 0 {
			t.Fatalf("containers left after RemovePodSandbox: %v", ls)
		}
	})

	t.Run("events were streamed", func(t *testing.T) {
		// The first subscription died with the killed crib; what it got
		// before covers create and start.
		seen := map[runtimeapi.ContainerEventType]bool{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				ev, err := events.Recv()
				if err != nil {
					return
				}
				if ev.ContainerId == ctr.ContainerId {
					seen[ev.ContainerEventType] = true
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		for _, want := range []runtimeapi.ContainerEventType{runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT} {
			if !seen[want] {
				t.Errorf("no %v event (saw %v)", want, seen)
			}
		}
	})

	// With no pod left, a stopped crib takes its namespaces down too.
	holder := d.holderPID(t)
	d.stop(t)
	if state := procState(holder); state != "" && state != "Z" {
		t.Errorf("namespace holder %d still alive after stop with no pods", holder)
	}
}

func httpGetRetry(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
