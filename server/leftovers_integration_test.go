//go:build integration

package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// conmon links <runroot>/attach/<id> to each container's bundle and never
// removes the link; crib removes it with the container (its reclaim).
func TestIntegrationAttachEntriesGoWithTheirContainers(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.startWithRegistry(t)
	c := d.clients(t)
	ctx := context.Background()
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	attachDir := filepath.Join(d.runroot, "attach")
	pcfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "churn", Namespace: "default", Uid: "churn-uid"}}
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.out)
	}
	const n = 5
	var ids []string
	for i := 0; i < n; i++ {
		r, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("c%d", i)},
				Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
				Command:  []string{"true"},
			}})
		if err != nil {
			t.Fatalf("CreateContainer: %v\n%s", err, d.out)
		}
		ids = append(ids, r.ContainerId)
	}
	// Started and exited, or never started: both kinds go. Only a start
	// runs a monitor, which makes the entry; the last one goes with its pod.
	started := append(slices.Clone(ids[:n/2]), ids[n-1])
	for _, id := range started {
		if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
	}
	if got := entries(t, attachDir); len(got) != len(started) {
		t.Fatalf("attach entries with %d containers started of %d: %v", len(started), n, got)
	}
	for _, id := range ids[:n-1] {
		if _, err := c.rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
	}
	// A removed container's link goes with its reclaim, moments after the
	// call returns (cri/reclaim.go).
	deadline := time.Now().Add(10 * time.Second)
	for got := entries(t, attachDir); len(got) != 1 || got[0] != ids[n-1]; got = entries(t, attachDir) {
		if time.Now().After(deadline) {
			t.Fatalf("attach entries 10s after removing all but %s: %v", ids[n-1], got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The last container goes with its pod.
	if _, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, attachDir); len(got) != 0 {
		t.Fatalf("attach entries after removing the pod: %v", got)
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
