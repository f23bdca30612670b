//go:build integration

package server_test

import (
	"context"
	"fmt"
	"io"
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

// The node's PID and IPC namespaces (issue 14, item 1): a hostPID or
// hostIPC pod gets crib's namespaces, held by the holder, never the
// machine's; `crib unshare` joins the same ones.

// nodePod runs a pod sharing the node's PID and IPC namespaces (its own
// network) with one container sleeping, and returns the container's id.
func nodePod(t *testing.T, c criClients, name string) (podID, ctrID string) {
	t.Helper()
	ctx := context.Background()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name + "-uid"},
		Hostname: name,
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
		}},
	}
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", name, err)
	}
	ctr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
		Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
		Command:  []string{"sleep", "3601"},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
		}},
	}})
	if err != nil {
		t.Fatalf("CreateContainer in %s: %v", name, err)
	}
	if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("StartContainer in %s: %v", name, err)
	}
	return pod.PodSandboxId, ctr.ContainerId
}

// podSh runs a shell command in a container and returns its standard
// output and exit code.
func podSh(t *testing.T, c criClients, ctr, script string) (string, int32) {
	t.Helper()
	r, err := c.rs.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"sh", "-c", script}, Timeout: 20})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	if len(r.Stderr) > 0 {
		t.Logf("exec %q: stderr %q", script, r.Stderr)
	}
	return strings.TrimSpace(string(r.Stdout)), r.ExitCode
}

func nsLink(t *testing.T, pid, kind string) string {
	t.Helper()
	link, err := os.Readlink(filepath.Join("/proc", pid, "ns", kind))
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// unshareCmd is `crib unshare -- sh -c script` as the test user.
func (d *daemon) unshareCmd(script string) *exec.Cmd {
	return d.userInfo.command(os.Getenv("CRIB_BIN"), "unshare", "--root", d.root, "--runroot", d.runroot, "--", "sh", "-c", script)
}

func TestIntegrationNodeNamespaces(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.startWithRegistry(t)
	c := d.clients(t)
	ctx := context.Background()
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	// Marks of the machine's IPC namespace a hostIPC pod must not see.
	shmMark := fmt.Sprintf("/dev/shm/crib-it-node-%d", os.Getpid())
	if err := os.WriteFile(shmMark, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(shmMark)
	key := sysvSegment(t)

	_, ctr := nodePod(t, c, "hostns")
	holder := strconv.Itoa(d.holderPID(t))
	parent := d.cmd.Process.Pid

	t.Run("the pod is in the holder's PID and IPC namespaces, not the machine's", func(t *testing.T) {
		for _, kind := range []string{"pid", "ipc"} {
			got, _ := podSh(t, c, ctr, "readlink /proc/self/ns/"+kind)
			if want := nsLink(t, holder, kind); got != want {
				t.Errorf("pod's %s namespace %q, the node's (holder's) is %q", kind, got, want)
			}
			if host := nsLink(t, "self", kind); got == host {
				t.Errorf("pod's %s namespace is the machine's (%s)", kind, host)
			}
		}
	})
	t.Run("its PID 1 is the holder, not the machine's init", func(t *testing.T) {
		got, _ := podSh(t, c, ctr, "tr '\\0' ' ' </proc/1/cmdline")
		host, _ := os.ReadFile("/proc/1/cmdline")
		if !strings.Contains(got, "catatonit") || got == strings.TrimSpace(strings.ReplaceAll(string(host), "\x00", " ")) {
			t.Errorf("pod's /proc/1/cmdline = %q (the machine's init: %q)", got, host)
		}
	})
	t.Run("crib's parent and the test process are out of reach", func(t *testing.T) {
		// Node pids count up from 1 in a namespace this test made: the
		// machine's pids of the parent and of this test are far above.
		if out, code := podSh(t, c, ctr, fmt.Sprintf("kill -0 %d 2>&1", parent)); code == 0 {
			t.Errorf("the pod can signal crib's parent (pid %d): %q", parent, out)
		}
		for _, pid := range []int{parent, os.Getpid()} {
			if _, code := podSh(t, c, ctr, fmt.Sprintf("test -e /proc/%d", pid)); code == 0 {
				t.Errorf("the pod sees pid %d of the machine in its /proc", pid)
			}
		}
	})
	t.Run("the machine's /dev/shm and SysV segments are out of reach", func(t *testing.T) {
		if _, code := podSh(t, c, ctr, "test -e "+shmMark); code == 0 {
			t.Errorf("the pod sees the machine's %s", shmMark)
		}
		if out, _ := podSh(t, c, ctr, "cat /proc/sysvipc/shm"); sysvKeyListed(out, key) {
			t.Errorf("the pod sees the machine's SysV segment %d:\n%s", key, out)
		}
	})
	t.Run("crib unshare sees the same processes as a hostPID pod", func(t *testing.T) {
		sleeper, _ := podSh(t, c, ctr, "pidof sleep")
		out, err := d.unshareCmd("readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; tr '\\0' ' ' </proc/" + sleeper + "/cmdline").CombinedOutput()
		if err != nil {
			t.Fatalf("crib unshare: %v\n%s", err, out)
		}
		podNS, _ := podSh(t, c, ctr, "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc")
		want := podNS + "\nsleep 3601"
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("crib unshare saw %q, the hostPID pod %q", got, want)
		}
	})
	t.Run("crib unshare passes a supervisor's SIGTERM on", func(t *testing.T) {
		cmd, _ := startUntilReady(t, d.unshareCmd("trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done"))
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatal("crib unshare did not end on SIGTERM")
		}
		if code := cmd.ProcessState.ExitCode(); code != 7 {
			t.Errorf("exit code %d, want 7 (the command's own, from its TERM trap)", code)
		}
	})
	t.Run("crib unshare keeps the command's argv[0] and exit status", func(t *testing.T) {
		out, err := d.unshareCmd("head -c 3 /proc/$$/cmdline; exit 3").Output()
		if string(out) != "sh\x00" {
			t.Errorf("the command's cmdline starts %q, want sh and a NUL", out)
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("exit: %v, want status 3", err)
		}
		err = d.userInfo.command(os.Getenv("CRIB_BIN"), "unshare", "--runroot", d.runroot, "--", "crib-no-such-command").Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 127 {
			t.Errorf("a command that does not exist: %v, want status 127", err)
		}
	})
	t.Run("a command does not outlive a SIGKILLed crib unshare", func(t *testing.T) {
		cmd, stdout := startUntilReady(t, d.unshareCmd("echo ready; exec sleep 3602"))
		cmd.Process.Kill()
		// The pipe ends when the last process holding it, sleep, is gone.
		ended := make(chan struct{})
		go func() { io.Copy(io.Discard, stdout); close(ended) }()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Error("the command outlived crib unshare killed with SIGKILL")
			out, _ := d.unshareCmd("pkill -f 'sleep 3602'").CombinedOutput()
			t.Logf("pkill: %s", out)
		}
		cmd.Wait()
	})
}

// sysvSegment makes a SysV shared memory segment in the machine's IPC
// namespace and returns its key.
func sysvSegment(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("ipcmk", "-M", "4096").CombinedOutput()
	if err != nil {
		t.Fatalf("ipcmk: %v %s", err, out)
	}
	f := strings.Fields(string(out))
	id := f[len(f)-1]
	t.Cleanup(func() { exec.Command("ipcrm", "-m", id).Run() })
	data, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		if g := strings.Fields(line); len(g) > 1 && g[1] == id {
			key, _ := strconv.Atoi(g[0])
			return key
		}
	}
	t.Fatalf("segment %s not in /proc/sysvipc/shm", id)
	return 0
}

func sysvKeyListed(table string, key int) bool {
	for _, line := range strings.Split(table, "\n") {
		if g := strings.Fields(line); len(g) > 0 && g[0] == strconv.Itoa(key) {
			return true
		}
	}
	return false
}

// TestIntegrationNodeOlderHolder is the upgrade path: a crib from before
// the node namespaces leaves a holder with pods in it; the new crib
// rejoins it with a warning and the machine's PID and IPC namespaces, the
// pods keep running, and once crib stops with no pod the next holder has
// the node's own.
func TestIntegrationNodeOlderHolder(t *testing.T) {
	u := lookupTestUser(t)
	newBin := os.Getenv("CRIB_BIN")
	d := newDaemon(t, u)
	t.Setenv("CRIB_BIN", olderCrib(t))
	d.startWithRegistry(t)
	c := d.clients(t)
	ctx := context.Background()
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	_, survivor := nodePod(t, c, "older")
	holder := d.holderPID(t)
	d.stop(t)
	if procState(holder) == "" {
		t.Fatalf("the older crib took its holder down with a pod left:\n%s", d.out)
	}

	t.Setenv("CRIB_BIN", newBin)
	d.start(t)
	c = d.clients(t)
	if !strings.Contains(d.out.String(), "made by an older crib") {
		t.Errorf("no warning about the older holder:\n%s", d.out)
	}
	if d.holderPID(t) != holder {
		t.Fatalf("crib replaced the older holder %d with %d", holder, d.holderPID(t))
	}
	st, err := c.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: survivor})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("the older crib's container after the upgrade: %v %v\n%s", st, err, d.out)
	}
	if got, _ := podSh(t, c, survivor, "readlink /proc/self/ns/pid"); got != nsLink(t, "self", "pid") {
		t.Errorf("under the older holder a hostPID pod keeps the machine's PID namespace, got %q", got)
	}
	_, second := nodePod(t, c, "older-second")
	if got, _ := podSh(t, c, second, "readlink /proc/self/ns/ipc"); got != nsLink(t, "self", "ipc") {
		t.Errorf("under the older holder a new hostIPC pod gets the machine's IPC namespace, got %q", got)
	}
	if out, err := d.unshareCmd("id -u").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Errorf("crib unshare under the older holder: %v %q", err, out)
	}

	d.removeAllPods()
	d.stop(t)
	if state := procState(holder); state != "" && state != "Z" {
		t.Fatalf("the older holder %d outlived a stop with no pods", holder)
	}
	d.start(t)
	c = d.clients(t)
	if strings.Contains(d.out.String(), "made by an older crib") {
		t.Errorf("a new holder is still called older:\n%s", d.out)
	}
	_, fresh := nodePod(t, c, "newer")
	if got, _ := podSh(t, c, fresh, "readlink /proc/self/ns/pid"); got != nsLink(t, strconv.Itoa(d.holderPID(t)), "pid") {
		t.Errorf("after the upgrade a hostPID pod is in PID namespace %q, not the node's", got)
	}
}

// olderCrib is a crib binary from before the node namespaces:
// CRIB_OLD_BIN, or built from the commit before the one that added
// server/node.go.
func olderCrib(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("CRIB_OLD_BIN"); bin != "" {
		return bin
	}
	added, err := exec.Command("git", "-C", "..", "log", "--diff-filter=A", "--format=%H", "--", "server/node.go").Output()
	if err != nil || len(strings.Fields(string(added))) == 0 {
		t.Fatalf("finding the commit that added server/node.go (or set CRIB_OLD_BIN): %v", err)
	}
	commits := strings.Fields(string(added))
	dir, err := os.MkdirTemp("", "crib-it-older-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src := filepath.Join(dir, "src")
	script := fmt.Sprintf("mkdir %s && git -C .. archive %s^ | tar -x -C %s", src, commits[len(commits)-1], src)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(dir, "crib")
	build := exec.Command(goBin, "build", "-tags", "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper", "-o", bin, "./cmd/crib")
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the older crib: %v\n%s", err, out)
	}
	return bin
}

// startUntilReady starts cmd and returns it, with the rest of its output,
// once it has written its first line ("ready").
func startUntilReady(t *testing.T, cmd *exec.Cmd) (*exec.Cmd, io.Reader) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := stdout.Read(buf); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout
}
