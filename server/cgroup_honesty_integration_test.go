//go:build integration

package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A crib that confines nothing (cgroup manager none, as on a host with no
// delegated cgroup) must say so everywhere: Status, cgroups.json, crib
// doctor, ContainerStatus (no resources it did not apply) and a warning in
// its log for the pod and the container that asked for limits.
func TestIntegrationUnconfinedIsReported(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.extra = append(d.extra, "--cgroup-manager", "none")
	d.startWithRegistry(t)
	c := d.clients(t)
	ctx := context.Background()

	st, err := c.rs.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var cond *runtimeapi.RuntimeCondition
	for _, x := range st.Status.Conditions {
		if x.Type == "ResourceLimitsEnforced" {
			cond = x
		}
	}
	if cond == nil || cond.Status || !strings.Contains(cond.Message, "pods run unconfined") {
		t.Errorf("ResourceLimitsEnforced condition = %v", cond)
	}

	data, err := os.ReadFile(filepath.Join(d.runroot, "cgroups.json"))
	if err != nil {
		t.Fatal(err)
	}
	var use struct {
		Manager  string `json:"manager"`
		Confined bool   `json:"confined"`
	}
	if err := json.Unmarshal(data, &use); err != nil || use.Manager != "none" || use.Confined {
		t.Errorf("cgroups.json = %s (%v)", data, err)
	}
	out, _ := u.command(os.Getenv("CRIB_BIN"), "doctor", "--root", d.root, "--runroot", d.runroot).CombinedOutput()
	if !strings.Contains(string(out), "the running crib confines no pod") {
		t.Errorf("crib doctor does not report the daemon's unconfined pods:\n%s", out)
	}

	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	logDir := filepath.Join(u.home, "it-logs-"+filepath.Base(d.runroot))
	defer os.RemoveAll(logDir)
	limits := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuPeriod: 100000, CpuQuota: 50000}
	pcfg := podConfig("limited", freeHostPort(t), logDir)
	pcfg.Linux.Resources = limits
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.out)
	}
	ccfg := webContainer()
	ccfg.Linux = &runtimeapi.LinuxContainerConfig{Resources: limits}
	ctr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: ccfg, SandboxConfig: pcfg})
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, d.out)
	}
	cs, err := c.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.ContainerId})
	if err != nil {
		t.Fatal(err)
	}
	if r := cs.Status.GetResources(); r != nil {
		t.Errorf("ContainerStatus reports resources that were not applied: %v", r)
	}
	log := d.out.String()
	for _, want := range []string{"pod asked for resource limits", "container asked for resource limits"} {
		if !strings.Contains(log, want) {
			t.Errorf("crib's log lacks %q", want)
		}
	}
}
