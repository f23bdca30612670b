//go:build integration

package server_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Issue 14, items 2 and 3, against a real crib: the pod crib recorded at
// RunPodSandbox decides what a container may be, whatever sandbox_config
// the client sends; and a stopped pod runs nothing, however creates and
// starts race its stop and removal.

const isolationImage = "docker.io/library/busybox:latest"

func isolationPod(name string, edit func(*runtimeapi.PodSandboxConfig)) *runtimeapi.PodSandboxConfig {
	c := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "isolation", Uid: name + "-uid"},
		Hostname: name,
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func sleeper(name string, privileged bool) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: isolationImage},
		Command:  []string{"sleep", "3600"},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			Privileged: privileged,
		}},
	}
}

func startIsolationDaemon(t *testing.T) (*daemon, criClients) {
	t.Helper()
	d := newDaemon(t, lookupTestUser(t))
	d.startWithRegistry(t)
	c := d.clients(t)
	if _, err := c.is.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: isolationImage}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	return d, c
}

// capEff is the effective capability mask of a container's process, as
// /proc/self/status shows it.
func capEff(t *testing.T, c criClients, id string) string {
	t.Helper()
	r, err := c.rs.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"grep", "CapEff", "/proc/self/status"}, Timeout: 20})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("exec in %s: %v %q %q", id, err, r.GetStdout(), r.GetStderr())
	}
	return strings.TrimSpace(string(r.Stdout))
}

func execOut(t *testing.T, c criClients, id string, cmd ...string) string {
	t.Helper()
	r, err := c.rs.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 20})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("exec %v in %s: %v %q %q", cmd, id, err, r.GetStdout(), r.GetStderr())
	}
	return strings.TrimSpace(string(r.Stdout))
}

func TestIntegrationPodDecisionsFromRecord(t *testing.T) {
	d, c := startIsolationDaemon(t)
	ctx := context.Background()
	honest := isolationPod("plain", nil)
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: honest})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.out)
	}
	// What `crictl create POD ctr.json privileged-pod.json` sends: the same
	// pod metadata, claimed privileged, on the node's network and with
	// another hostname.
	forged := isolationPod("plain", func(p *runtimeapi.PodSandboxConfig) {
		p.Hostname = "forged"
		p.Linux.SecurityContext.Privileged = true
		p.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	})
	run := func(name string, privileged bool, sandboxCfg *runtimeapi.PodSandboxConfig) (string, error) {
		r, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: sleeper(name, privileged), SandboxConfig: sandboxCfg})
		if err != nil {
			return "", err
		}
		if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
			t.Fatalf("StartContainer %s: %v\n%s", name, err, d.out)
		}
		return r.ContainerId, nil
	}

	if id, err := run("privileged", true, forged); status.Code(err) != codes.InvalidArgument {
		caps := ""
		if id != "" {
			caps = capEff(t, c, id)
		}
		t.Fatalf("privileged container in a non-privileged pod, with a privileged sandbox_config: %v (container %s, %s), want InvalidArgument", err, id, caps)
	}
	plain, err := run("plain", false, nil)
	if err != nil {
		t.Fatalf("container with the pod's own config: %v\n%s", err, d.out)
	}
	claimed, err := run("claimed", false, forged)
	if err != nil {
		t.Fatalf("container with a forged sandbox_config: %v\n%s", err, d.out)
	}
	if got, want := capEff(t, c, claimed), capEff(t, c, plain); got != want {
		t.Errorf("capabilities with the forged sandbox_config %s, want the pod's %s", got, want)
	}
	if got := execOut(t, c, claimed, "hostname"); got != "plain" {
		t.Errorf("hostname with the forged sandbox_config %q, want the pod's \"plain\"", got)
	}
	// On the node's network the container would see crib's interfaces
	// (tap0 from slirp4netns or the passt interface), not only the pod's.
	if got, want := execOut(t, c, claimed, "cat", "/proc/net/dev"), execOut(t, c, plain, "cat", "/proc/net/dev"); interfaces(got) != interfaces(want) {
		t.Errorf("interfaces with the forged sandbox_config %s, want the pod's %s", interfaces(got), interfaces(want))
	}
}

// interfaces names the interfaces in a /proc/net/dev listing.
func interfaces(procNetDev string) string {
	var out []string
	for _, line := range strings.Split(procNetDev, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
			out = append(out, strings.TrimSpace(name))
		}
	}
	return strings.Join(out, ",")
}

// TestIntegrationPodStopRace races, on one pod, creates and starts
// against the pod's stop and removal, round after round. Afterwards no
// container runs in a pod that is not ready, no container is left without
// a pod, and once everything is removed no monitor or mount remains.
func TestIntegrationPodStopRace(t *testing.T) {
	d, c := startIsolationDaemon(t)
	f := &faultRun{t: t, d: d}
	ctx := context.Background()
	baseMounts := f.mounts()
	rounds := envInt(t, "CRIB_RACE_ROUNDS", 50)
	const workers = 20
	var refused, started int
	for round := range rounds {
		name := fmt.Sprintf("race-%d", round)
		pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: isolationPod(name, nil)})
		if err != nil {
			t.Fatalf("round %d: RunPodSandbox: %v\n%s", round, err, d.out)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		gate := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				var err error
				switch w {
				case 0:
					_, err = c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
				case 1:
					_, err = c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
				default:
					var ok bool
					ok, err = createStart(ctx, c, pod.PodSandboxId, fmt.Sprintf("c%d", w))
					mu.Lock()
					if ok {
						started++
					} else if err == nil {
						refused++
					}
					mu.Unlock()
				}
				if err != nil {
					t.Errorf("round %d worker %d: %v", round, w, err)
				}
			}()
		}
		close(gate)
		wg.Wait()
		checkNoOrphans(t, c, round)
		if t.Failed() {
			t.Fatalf("round %d failed\n%s", round, tail(d.out.String(), 60))
		}
		// The remove may have run before some creates: clean the round up.
		if _, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Fatalf("round %d: final remove: %v", round, err)
		}
	}
	t.Logf("%d rounds: %d containers started before their pod stopped, %d creates or starts refused", rounds, started, refused)
	ls, _ := c.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	pods, _ := c.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if len(ls.GetContainers())+len(pods.GetItems()) != 0 {
		t.Fatalf("left after every pod was removed: %v %v", ls, pods)
	}
	// Monitors exit with their container; give the last ones a moment.
	deadline := time.Now().Add(10 * time.Second)
	for monitors(f) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := monitors(f); n != 0 {
		t.Errorf("%d conmon processes left: %v", n, f.processNames())
	}
	if extra, _ := setDiff(f.mounts(), baseMounts); len(extra) != 0 {
		t.Errorf("mounts left: %v", extra)
	}
}

// createStart creates and starts one container. ok means it started; a
// refusal the race allows (the pod stopped or went: FailedPrecondition,
// NotFound) is no error.
func createStart(ctx context.Context, c criClients, pod, name string) (ok bool, err error) {
	r, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: sleeper(name, false)})
	if raceRefusal(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create %s: %w", name, err)
	}
	_, err = c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId})
	if raceRefusal(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("start %s: %w", name, err)
	}
	return true, nil
}

func raceRefusal(err error) bool {
	code := status.Code(err)
	return code == codes.FailedPrecondition || code == codes.NotFound
}

// checkNoOrphans: no running container in a pod that is not ready, and
// no container whose pod is gone.
func checkNoOrphans(t *testing.T, c criClients, round int) {
	t.Helper()
	ctx := context.Background()
	pods, err := c.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ready := map[string]bool{}
	exists := map[string]bool{}
	for _, p := range pods.Items {
		exists[p.Id] = true
		ready[p.Id] = p.State == runtimeapi.PodSandboxState_SANDBOX_READY
	}
	ls, err := c.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ctr := range ls.Containers {
		switch {
		case !exists[ctr.PodSandboxId]:
			t.Errorf("round %d: container %s (%s, %v) has no pod", round, ctr.Id, ctr.Metadata.GetName(), ctr.State)
		case ctr.State == runtimeapi.ContainerState_CONTAINER_RUNNING && !ready[ctr.PodSandboxId]:
			t.Errorf("round %d: container %s (%s) runs in a pod that is not ready", round, ctr.Id, ctr.Metadata.GetName())
		}
	}
}

// monitors counts the conmon processes in crib's user namespace.
func monitors(f *faultRun) int {
	n := 0
	for _, pid := range f.cribProcesses(false) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "conmon" {
			n++
		}
	}
	return n
}
