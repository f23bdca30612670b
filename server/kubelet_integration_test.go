//go:build integration

package server_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A real kubelet v1.37 (KUBELET_BIN, built by contrib/kubelet/build-kubelet.sh)
// run on rootless crib through contrib/kubelet/crib-kubelet.sh, standalone:
// a static pod of two containers with an exec liveness probe.

const e2eManifest = `apiVersion: v1
kind: Pod
metadata:
  name: e2e
  namespace: default
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: busybox
    command: ["sh", "-c", "echo web started; touch /tmp/healthy; exec sleep 3600"]
    livenessProbe:
      exec:
        command: ["cat", "/tmp/healthy"]
      periodSeconds: 1
      failureThreshold: 1
  - name: ticker
    image: busybox
    command: ["sh", "-c", "while true; do echo tick; sleep 1; done"]
`

// usernsManifest is a pod in its own user namespace (hostUsers: false)
// whose two containers share an emptyDir: one writes, the other reads.
const usernsManifestYAML = `apiVersion: v1
kind: Pod
metadata:
  name: userns
  namespace: default
spec:
  hostUsers: false
  terminationGracePeriodSeconds: 2
  volumes:
  - name: shared
    emptyDir: {}
  containers:
  - name: writer
    image: busybox
    command: ["sh", "-c", "id -u > /shared/msg; echo from-writer >> /shared/msg; exec sleep 3600"]
    volumeMounts:
    - {name: shared, mountPath: /shared}
  - name: reader
    image: busybox
    command: ["sh", "-c", "while true; do cat /shared/msg 2>/dev/null | tr '\\n' ' '; echo; sleep 1; done"]
    volumeMounts:
    - {name: shared, mountPath: /shared}
`

type kubeletRun struct {
	t        *testing.T
	cmd      *exec.Cmd
	out      *lockedBuffer
	manifest string // the static pod file
	rs       runtimeapi.RuntimeServiceClient
}

func TestIntegrationKubeletStaticPod(t *testing.T) {
	kubelet := os.Getenv("KUBELET_BIN")
	if kubelet == "" {
		t.Fatal("run through `make integration`, which builds the kubelet and sets KUBELET_BIN")
	}
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.startWithRegistry(t)
	k := startKubelet(t, d, kubelet)
	k.rs = d.clients(t).rs

	os.WriteFile(k.manifest, []byte(e2eManifest), 0o644)
	pod := k.waitPod(runtimeapi.PodSandboxState_SANDBOX_READY, 90*time.Second)
	web := k.waitContainer(pod, "web", 0, 60*time.Second)
	ticker := k.waitContainer(pod, "ticker", 0, 60*time.Second)

	t.Run("the kubelet has file-system statistics (eviction, /stats/summary)", func(t *testing.T) {
		// With localStorageCapacityIsolation off its cAdvisor collects none
		// and says so every 10 s.
		if strings.Contains(k.out.String(), "cannot find filesystem info") {
			t.Fatalf("the kubelet finds no file-system statistics:\n%s", tail(k.out.String(), 40))
		}
	})
	t.Run("logs of both containers are readable from the host", func(t *testing.T) {
		k.waitLog(web, "web started")
		k.waitLog(ticker, "tick")
	})
	t.Run("a failing liveness probe restarts the container", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := k.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: web, Cmd: []string{"rm", "/tmp/healthy"}, Timeout: 5}); err != nil {
			t.Fatal(err)
		}
		restarted := k.waitContainer(pod, "web", 1, 60*time.Second)
		if restarted == web {
			t.Fatal("the restarted container has the old id")
		}
		k.waitLog(restarted, "web started")
	})
	usernsManifest := filepath.Join(filepath.Dir(k.manifest), "userns.yaml")
	t.Run("a hostUsers: false pod shares an emptyDir between its containers", func(t *testing.T) {
		os.WriteFile(usernsManifest, []byte(usernsManifestYAML), 0o644)
		pod := k.waitPodNamed("userns-crib-e2e", runtimeapi.PodSandboxState_SANDBOX_READY, 90*time.Second)
		writer := k.waitContainer(pod, "writer", 0, 60*time.Second)
		reader := k.waitContainer(pod, "reader", 0, 60*time.Second)
		k.waitLog(reader, "0 from-writer")
		r, err := k.rs.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: writer, Cmd: []string{"cat", "/proc/self/uid_map"}, Timeout: 10})
		if err != nil {
			t.Fatal(err)
		}
		cribs, _ := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", d.childPID(t)))
		got := strings.Join(strings.Fields(string(r.Stdout)), " ")
		t.Logf("the kubelet's user-namespaced pod: uid_map %q (crib's %q)", got, strings.Join(strings.Fields(string(cribs)), " "))
		// The kubelet picks one of the 65536-id slots of the range crib
		// gave it: crib's ids from 65536 up.
		f := strings.Fields(got)
		host, _ := strconv.Atoi(f[1])
		if len(f) != 3 || f[0] != "0" || f[2] != "65536" || host < 65536 || host%65536 != 0 {
			t.Errorf("uid_map %q, want one slot of 65536 of crib's ids above 65536", got)
		}
	})
	t.Run("the pod goes when its manifest goes", func(t *testing.T) {
		os.Remove(usernsManifest)
		os.Remove(k.manifest)
		// The kubelet stops the pod at once and removes the sandbox at its
		// next garbage collection (every minute).
		k.waitNoPods(150 * time.Second)
	})
}

// startKubelet runs contrib/kubelet/crib-kubelet.sh as the test user with
// its own configuration directory, and stops the kubelet at the end.
func startKubelet(t *testing.T, d *daemon, kubelet string) *kubeletRun {
	t.Helper()
	confHome, err := os.MkdirTemp("", "crib-it-kubelet-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(confHome) })
	os.Chown(confHome, d.userInfo.uid, d.userInfo.gid)
	script, _ := filepath.Abs("../contrib/kubelet/crib-kubelet.sh")
	args := []string{"XDG_CONFIG_HOME=" + confHome, "KUBELET=" + kubelet, "CRIB=" + os.Getenv("CRIB_BIN"),
		script, "--standalone", "--root", d.root, "--runroot", d.runroot, "--",
		"--hostname-override=crib-e2e", "--v=2"}
	k := &kubeletRun{t: t, out: &lockedBuffer{}, manifest: filepath.Join(confHome, "crib", "manifests", "e2e.yaml")}
	k.cmd = d.userInfo.command(append([]string{"env"}, args...)...)
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { k.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			k.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("kubelet output (tail):\n%s", tail(k.out.String(), 60))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(k.out.String(), "Started kubelet") {
		select {
		case <-exited:
			t.Fatalf("the kubelet exited during start:\n%s", k.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the kubelet did not start within 30s:\n%s", tail(k.out.String(), 60))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Dir(k.manifest)); err != nil {
		t.Fatalf("crib kubelet-config did not make the static pod directory: %v", err)
	}
	return k
}

func (k *kubeletRun) waitPod(state runtimeapi.PodSandboxState, d time.Duration) string {
	k.t.Helper()
	return k.waitPodNamed("e2e-crib-e2e", state, d)
}

func (k *kubeletRun) waitPodNamed(name string, state runtimeapi.PodSandboxState, d time.Duration) string {
	k.t.Helper()
	var last string
	k.poll(d, func(ctx context.Context) bool {
		pods, err := k.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			LabelSelector: map[string]string{"io.kubernetes.pod.name": name}}})
		if err != nil {
			return false
		}
		for _, p := range pods.Items {
			if p.State == state {
				last = p.Id
				return true
			}
		}
		return false
	}, "the static pod "+name+" to be "+state.String())
	return last
}

func (k *kubeletRun) waitContainer(pod, name string, attempt uint32, d time.Duration) string {
	k.t.Helper()
	var id string
	k.poll(d, func(ctx context.Context) bool {
		ctrs, err := k.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod,
			State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
		if err != nil {
			return false
		}
		for _, c := range ctrs.Containers {
			if c.Metadata.Name == name && c.Metadata.Attempt == attempt {
				id = c.Id
				return true
			}
		}
		return false
	}, fmt.Sprintf("container %s attempt %d to run", name, attempt))
	return id
}

// waitLog reads the container's log file where the kubelet put it
// (podLogsDir, a directory of the user's on the host).
func (k *kubeletRun) waitLog(id, want string) {
	k.t.Helper()
	var path string
	k.poll(30*time.Second, func(ctx context.Context) bool {
		st, err := k.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			return false
		}
		path = st.Status.LogPath
		data, _ := os.ReadFile(path)
		return bytes.Contains(data, []byte(want))
	}, fmt.Sprintf("%q in the log of %s", want, id))
	if !strings.HasPrefix(path, "/home/") {
		k.t.Errorf("log %s is not in the user's podLogsDir", path)
	}
}

func (k *kubeletRun) waitNoPods(d time.Duration) {
	k.t.Helper()
	k.poll(d, func(ctx context.Context) bool {
		pods, err := k.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		return err == nil && len(pods.Items) == 0
	}, "no pod left")
}

func (k *kubeletRun) poll(d time.Duration, done func(context.Context) bool, what string) {
	k.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok := done(ctx)
		cancel()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
