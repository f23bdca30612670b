package cri

import (
	"context"
	"errors"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	crt "github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
)

// mustCreate creates container name in pod and, when start is set,
// starts it; it returns the container's id.
func (e *fakeEnv) mustCreate(t *testing.T, pod, name string, start bool) string {
	t.Helper()
	ctx := context.Background()
	resp, err := e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrCfg(name, withImageVolumes)})
	if err != nil {
		t.Fatalf("creating %s in %s: %v", name, pod, err)
	}
	if start {
		if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			t.Fatalf("starting %s: %v", name, err)
		}
	}
	return resp.ContainerId
}

func (e *fakeEnv) state(t *testing.T, id string) crt.State {
	t.Helper()
	c, err := e.ctrs.Get(id)
	if err != nil {
		t.Fatalf("container %s: %v", id, err)
	}
	return c.State
}

func (e *fakeEnv) addPod2() {
	e.pods.add(&sandbox.Sandbox{ID: "pod2", State: sandbox.StateReady, Config: podCfg("other", nil),
		NetNSPath: "/fake/net2", IPCNSPath: "/fake/ipc2", UTSNSPath: "/fake/uts2"})
}

// TestStopPodSandboxWithContainers: a stop ends every container of the
// pod, running or created, before the pod, and no other pod's; a failed
// container stop leaves the pod ready, and a retry completes.
func TestStopPodSandboxWithContainers(t *testing.T) {
	e, running, created, other := twoPodsThreeContainers(t)
	ctx := context.Background()

	injected := errors.New("injected failure")
	e.ctrs.inject("Stop", injected)
	stop := &runtimeapi.StopPodSandboxRequest{PodSandboxId: "pod1"}
	if _, err := e.svc.StopPodSandbox(ctx, stop); !errors.Is(err, injected) {
		t.Fatalf("StopPodSandbox with a failing container stop: %v, want the failure", err)
	}
	if sb, _ := e.pods.Get("pod1"); sb.State != sandbox.StateReady {
		t.Fatalf("pod after a failed stop: %s, want still ready (retryable)", sb.State)
	}

	e.ctrs.inject("Stop", nil)
	if _, err := e.svc.StopPodSandbox(ctx, stop); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{running, created} {
		if st := e.state(t, id); st != crt.StateExited {
			t.Errorf("container %s of the stopped pod is %s, want exited", id, st)
		}
	}
	if st := e.state(t, other); st != crt.StateRunning {
		t.Errorf("the other pod's container is %s, want running", st)
	}
	if sb, _ := e.pods.Get("pod1"); sb.State != sandbox.StateNotReady {
		t.Errorf("pod after stop: %s, want not ready", sb.State)
	}
	// Stopping again, or an unknown pod, succeeds.
	if _, err := e.svc.StopPodSandbox(ctx, stop); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "nopod"}); err != nil {
		t.Errorf("stop of an unknown pod: %v", err)
	}
}

// TestRemovePodSandboxWithContainers: a remove stops and removes every
// container of the pod with its storage and name, then the pod and its
// name; another pod keeps its container.
func TestRemovePodSandboxWithContainers(t *testing.T) {
	e, running, created, other := twoPodsThreeContainers(t)
	ctx := context.Background()
	if !e.svc.podNames.holds("web_default_u1_0") {
		t.Fatal("pod1's name is not reserved to begin with")
	}

	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "pod1"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{running, created} {
		if _, err := e.ctrs.Get(id); !errdefs.IsNotFound(err) {
			t.Errorf("container %s of the removed pod: %v, want not found", id, err)
		}
		e.rootfs.mu.Lock()
		left := e.rootfs.layers[id] || e.rootfs.mounted[id]
		e.rootfs.mu.Unlock()
		if left {
			t.Errorf("storage of container %s is left", id)
		}
	}
	if !slices.Contains(e.ctrs.calls, "Stop "+running) {
		t.Errorf("the running container was not stopped before removal: calls %v", e.ctrs.calls)
	}
	if _, err := e.pods.Get("pod1"); !errdefs.IsNotFound(err) {
		t.Errorf("pod after remove: %v, want not found", err)
	}
	if st := e.state(t, other); st != crt.StateRunning {
		t.Errorf("the other pod's container is %s, want running", st)
	}
	e.rootfs.mu.Lock()
	got := e.rootfs.imageMounts["vol-aid"]
	e.rootfs.mu.Unlock()
	if got != 1 {
		t.Errorf("image volume vol-a mounted %d times, want 1 (the other pod's container)", got)
	}
	if e.svc.podNames.holds("web_default_u1_0") {
		t.Error("the removed pod's name is still reserved")
	}
	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "pod1"}); err != nil {
		t.Errorf("second remove: %v", err)
	}
}

// twoPodsThreeContainers: pod1 with a running and a created container,
// pod2 with a running one.
func twoPodsThreeContainers(t *testing.T) (e *fakeEnv, running, created, other string) {
	t.Helper()
	e = newFakeEnv(t, "")
	e.addPod2()
	return e, e.mustCreate(t, "pod1", "web", true), e.mustCreate(t, "pod1", "sidecar", false), e.mustCreate(t, "pod2", "db", true)
}
