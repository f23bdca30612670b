package cri

import (
	"context"
	"runtime"
	"sync"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	crt "github.com/crib-dev/crib/runtime"
)

// waitRefs yields until id's lock has n holders and waiters: the only way
// to know, without a clock, that another goroutine is blocked on it.
func waitRefs(p *podLocks, id string, n int) {
	for {
		p.mu.Lock()
		l := p.locks[id]
		got := 0
		if l != nil {
			got = l.refs
		}
		p.mu.Unlock()
		if got == n {
			return
		}
		runtime.Gosched()
	}
}

func TestPodLocks(t *testing.T) {
	t.Run("shared holders run together, exclusive waits for them", func(t *testing.T) {
		p := newPodLocks()
		r1 := p.shared("a")
		r2 := p.shared("a") // would deadlock if shared excluded shared
		got := make(chan struct{})
		go func() {
			unlock := p.exclusive("a")
			close(got)
			unlock()
		}()
		waitRefs(p, "a", 3)
		r1()
		select {
		case <-got:
			t.Fatal("exclusive taken while a shared holder remains")
		default:
		}
		r2()
		<-got
		other := p.exclusive("b") // another pod is independent
		other()
		waitRefs(p, "a", 0)
		if n := p.size(); n != 0 {
			t.Fatalf("%d lock entries left after every holder released", n)
		}
	})

	t.Run("stop waits for an in-flight create and stops its container", func(t *testing.T) {
		e := newFakeEnv(t, "")
		inCreate, release := make(chan struct{}), make(chan struct{})
		e.ctrs.pause = func(op string) {
			if op == "create" {
				close(inCreate)
				<-release
			}
		}
		ctx := context.Background()
		var created *runtimeapi.CreateContainerResponse
		var createErr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			created, createErr = e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1", Config: ctrCfg("app", nil)})
		}()
		<-inCreate // the container is reserved but not yet recorded
		stopped := make(chan error, 1)
		go func() {
			_, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "pod1"})
			stopped <- err
		}()
		waitRefs(e.svc.podLocks, "pod1", 2) // the stop is waiting for the create
		e.ctrs.pause = nil
		close(release)
		wg.Wait()
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		if createErr != nil {
			t.Fatalf("create that passed the ready check before the stop: %v", createErr)
		}
		c, err := e.ctrs.Get(created.ContainerId)
		if err != nil || c.State != crt.StateExited {
			t.Fatalf("container created during the stop: %+v, %v; want it stopped by the stop", c, err)
		}
		_, err = e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId})
		if !errdefs.IsFailedPrecondition(err) {
			t.Fatalf("start in a stopped pod: %v, want FailedPrecondition", err)
		}
		_, err = e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1", Config: ctrCfg("late", nil)})
		if !errdefs.IsFailedPrecondition(err) {
			t.Fatalf("create in a stopped pod: %v, want FailedPrecondition", err)
		}
	})

	t.Run("RemoveContainer waits while the pod is being stopped", func(t *testing.T) {
		e := newFakeEnv(t, "")
		ctx := context.Background()
		resp, err := e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1", Config: ctrCfg("app", nil)})
		if err != nil {
			t.Fatal(err)
		}
		unlock := e.svc.podLocks.exclusive("pod1") // as StopPodSandbox holds it
		removed := make(chan error, 1)
		go func() {
			_, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: resp.ContainerId})
			removed <- err
		}()
		// Either the remove queues on the lock (2 refs) or, without the
		// lock, it finishes while the pod's stop still runs.
		for waiting := false; !waiting; {
			select {
			case <-removed:
				t.Fatal("RemoveContainer ran while the pod's lock was held exclusive")
			default:
			}
			e.svc.podLocks.mu.Lock()
			waiting = e.svc.podLocks.locks["pod1"].refs == 2
			e.svc.podLocks.mu.Unlock()
			runtime.Gosched()
		}
		unlock()
		if err := <-removed; err != nil {
			t.Fatal(err)
		}
		if _, err := e.ctrs.Get(resp.ContainerId); !errdefs.IsNotFound(err) {
			t.Fatalf("container after RemoveContainer: %v, want not found", err)
		}
		if n := e.svc.podLocks.size(); n != 0 {
			t.Fatalf("%d lock entries left", n)
		}
	})

	t.Run("remove waits for an in-flight start, then removes the container", func(t *testing.T) {
		e := newFakeEnv(t, "")
		ctx := context.Background()
		resp, err := e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1", Config: ctrCfg("app", nil)})
		if err != nil {
			t.Fatal(err)
		}
		inStart, release := make(chan struct{}), make(chan struct{})
		e.ctrs.pause = func(op string) {
			if op == "start" {
				close(inStart)
				<-release
			}
		}
		started := make(chan error, 1)
		go func() {
			_, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId})
			started <- err
		}()
		<-inStart
		removed := make(chan error, 1)
		go func() {
			_, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "pod1"})
			removed <- err
		}()
		waitRefs(e.svc.podLocks, "pod1", 2)
		e.ctrs.pause = nil
		close(release)
		if err := <-started; err != nil {
			t.Fatalf("start that began before the remove: %v", err)
		}
		if err := <-removed; err != nil {
			t.Fatal(err)
		}
		if list := e.ctrs.List(); len(list) != 0 {
			t.Fatalf("containers left after the pod was removed: %+v", list)
		}
		if n := e.svc.podLocks.size(); n != 0 {
			t.Fatalf("%d lock entries left", n)
		}
	})
}
