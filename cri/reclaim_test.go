package cri

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRemovedContainerReclaim: RemoveContainer frees the record and the
// name at once and leaves the filesystem to the reclaimer; a reclaim that
// failed is run again by the pod's removal, which fails while it does and
// returns only once every container of the pod is reclaimed.
func TestRemovedContainerReclaim(t *testing.T) {
	e := newFakeEnv(t, "")
	ctx := context.Background()
	id := e.mustCreate(t, "pod1", "web", true)

	injected := errors.New("injected layer deletion failure")
	e.rootfs.inject("DeleteContainer", injected)
	if _, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer: %v (the filesystem's deletion is the reclaimer's)", err)
	}
	next := e.mustCreate(t, "pod1", "web", false) // the name is free at once
	e.svc.reclaims.wg.Wait()
	if !e.layer(id) {
		t.Fatal("the layer is gone although its deletion failed")
	}

	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "pod1"}); err != nil {
		t.Fatal(err)
	}
	remove := &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "pod1"}
	if _, err := e.svc.RemovePodSandbox(ctx, remove); !errors.Is(err, injected) {
		t.Fatalf("RemovePodSandbox with a container left to reclaim: %v, want the reclaim's failure", err)
	}
	if _, err := e.pods.Get("pod1"); err != nil {
		t.Fatalf("the pod went while its containers' files stay: %v", err)
	}
	e.rootfs.inject("DeleteContainer", nil)
	if _, err := e.svc.RemovePodSandbox(ctx, remove); err != nil {
		t.Fatal(err)
	}
	// No wait here: the pod's removal returns after its reclaims.
	if e.layer(id) || e.layer(next) {
		t.Errorf("layers left after the pod's removal: %v %v", e.layer(id), e.layer(next))
	}
	e.rootfs.mu.Lock()
	defer e.rootfs.mu.Unlock()
	if n := e.rootfs.imageMounts["vol-aid"]; n != 0 {
		t.Errorf("vol-a mounted %d times after the pod's removal, want 0 (a retried reclaim releases each mount once)", n)
	}
}

func (e *fakeEnv) layer(id string) bool {
	e.rootfs.mu.Lock()
	defer e.rootfs.mu.Unlock()
	return e.rootfs.layers[id]
}

// TestRemoveContainerNameReleaseFails: when the image store cannot free
// the name alone, the removal deletes the filesystem at once, which frees
// it too, so the successor can still be created.
func TestRemoveContainerNameReleaseFails(t *testing.T) {
	e := newFakeEnv(t, "")
	ctx := context.Background()
	id := e.mustCreate(t, "pod1", "web", true)
	e.rootfs.inject("ReleaseName", errors.New("injected name release failure"))
	// Every reclaim slot taken: nothing runs in the background meanwhile.
	for range reclaimWorkers {
		e.svc.reclaims.slots <- struct{}{}
	}
	_, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	for range reclaimWorkers {
		<-e.svc.reclaims.slots
	}
	if err != nil {
		t.Fatal(err)
	}
	if e.layer(id) {
		t.Error("the layer is left to the background although its name is still taken")
	}
	e.mustCreate(t, "pod1", "web", false)
}

// TestPodRemovalRunsQueuedReclaims: a pod's removal does not queue behind
// other pods' reclaims: it runs itself those of its containers no worker
// has started.
func TestPodRemovalRunsQueuedReclaims(t *testing.T) {
	e := newFakeEnv(t, "")
	ctx := context.Background()
	id := e.mustCreate(t, "pod1", "web", true)
	for range reclaimWorkers { // every worker busy elsewhere
		e.svc.reclaims.slots <- struct{}{}
	}
	defer func() {
		for range reclaimWorkers {
			<-e.svc.reclaims.slots
		}
	}()
	if _, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "pod1"}); err != nil {
		t.Fatal(err)
	}
	// The deadline only bounds a failure: a removal waiting for a worker.
	bounded, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := e.svc.RemovePodSandbox(bounded, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "pod1"}); err != nil {
		t.Fatalf("RemovePodSandbox with every reclaim worker busy: %v", err)
	}
	if e.layer(id) {
		t.Error("the layer is left after the pod's removal")
	}
}

// countingWork counts the Begin and End calls it is told of.
type countingWork struct {
	mu         sync.Mutex
	begun, end int
}

func (w *countingWork) Begin() { w.mu.Lock(); w.begun++; w.mu.Unlock() }
func (w *countingWork) End()   { w.mu.Lock(); w.end++; w.mu.Unlock() }
func (w *countingWork) counts() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.begun, w.end
}

// TestReclaimIsWork: a reclaim is work in flight from its start to its
// end, so that the daemon's memory trim comes after a burst's reclaims.
func TestReclaimIsWork(t *testing.T) {
	w := &countingWork{}
	r := newReclaimer(nil, w)
	ran, release := make(chan struct{}), make(chan struct{})
	r.add("pod1", "c1", func(context.Context) error { close(ran); <-release; return nil })
	<-ran
	if b, e := w.counts(); b != 1 || e != 0 {
		t.Fatalf("while the reclaim runs: %d begun, %d ended; want 1, 0", b, e)
	}
	close(release)
	r.wg.Wait()
	if b, e := w.counts(); b != 1 || e != 1 {
		t.Fatalf("after the reclaim: %d begun, %d ended; want 1, 1", b, e)
	}
}
