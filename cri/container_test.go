package cri

import (
	"context"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/sandbox"
)

// TestRemoveContainerRunning: removing a running container, by a prefix
// of its id, stops it first and takes its record, storage, image volumes
// and name; the pod and its other containers stay.
func TestRemoveContainerRunning(t *testing.T) {
	e := newFakeEnv(t, "")
	ctx := context.Background()
	id := e.mustCreate(t, "pod1", "web", true)
	keep := e.mustCreate(t, "pod1", "sidecar", true)

	if _, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id[:12]}); err != nil {
		t.Fatal(err)
	}
	stop, remove := slices.Index(e.ctrs.calls, "Stop "+id), slices.Index(e.ctrs.calls, "Remove "+id)
	if stop < 0 || remove < stop {
		t.Errorf("calls %v: want the container stopped, then removed", e.ctrs.calls)
	}
	if _, err := e.ctrs.Get(id); !errdefs.IsNotFound(err) {
		t.Errorf("record after remove: %v, want not found", err)
	}
	e.svc.reclaims.wg.Wait() // the filesystem is the reclaimer's
	e.rootfs.mu.Lock()
	leftLayer, leftMount, volumes := e.rootfs.layers[id], e.rootfs.mounted[id], e.rootfs.imageMounts["vol-aid"]
	e.rootfs.mu.Unlock()
	if leftLayer || leftMount || volumes != 1 {
		t.Errorf("storage after remove: layer %v, mounted %v, vol-a mounts %d (want 1: the sidecar's)", leftLayer, leftMount, volumes)
	}
	if e.state(t, keep) != "running" {
		t.Error("the pod's other container was touched")
	}
	if sb, _ := e.pods.Get("pod1"); sb.State != sandbox.StateReady {
		t.Errorf("pod after removing a container: %s, want ready", sb.State)
	}
	// The name is free: the kubelet's next attempt may reuse it.
	e.mustCreate(t, "pod1", "web", false)
	// Removing an unknown container succeeds.
	if _, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("second remove: %v", err)
	}
}
