//go:build integration

package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Exec, attach and port-forward against a real rootless crib, driven by
// crictl from the host namespaces and from inside crib's (crib unshare):
// the one streaming URL must work from both, over either of crictl's
// transports (SPDY, WebSocket).

// streamMode runs crictl from the host or through `crib unshare`.
type streamMode struct {
	name string
	wrap func(args ...string) []string
}

func streamModes(d *daemon) []streamMode {
	host := func(args ...string) []string { return args }
	inside := func(args ...string) []string {
		return append([]string{os.Getenv("CRIB_BIN"), "unshare", "--runroot", d.runroot, "--"}, args...)
	}
	return []streamMode{{"host", host}, {"inside", inside}}
}

func (d *daemon) crictlArgs(args ...string) []string {
	return append([]string{os.Getenv("CRICTL_BIN"), "--runtime-endpoint", "unix://" + d.socket, "--timeout", "60s"}, args...)
}

// shellQuote joins args for `script -c` and `sh -c`.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func TestIntegrationStreaming(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.startWithRegistry(t)
	c := d.clients(t)
	ctx := context.Background()
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	logDir := filepath.Join(u.home, "it-logs-"+filepath.Base(d.runroot))
	defer os.RemoveAll(logDir)
	pcfg := podConfig("stream", freeHostPort(t), logDir)
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.out)
	}
	podID := pod.PodSandboxId
	defer c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	run := func(cfg *runtimeapi.ContainerConfig) string {
		t.Helper()
		cr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pcfg})
		if err != nil {
			t.Fatalf("CreateContainer: %v\n%s", err, d.out)
		}
		if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			t.Fatalf("StartContainer: %v\n%s", err, d.out)
		}
		return cr.ContainerId
	}
	web := run(webContainer())
	ticker := run(&runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "ticker"},
		Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
		Command:  []string{"sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done"},
		LogPath:  "ticker.log",
	})

	for _, m := range streamModes(d) {
		crictl := func(args ...string) *exec.Cmd { return u.command(m.wrap(d.crictlArgs(args...)...)...) }
		t.Run(m.name+"/exec -s", func(t *testing.T) {
			out, err := crictl("exec", "-s", web, "sh", "-c", "echo out-"+m.name).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "out-"+m.name+"\n") {
				t.Fatalf("%v: %s", err, out)
			}
		})
		// crictl's SPDY transport, and its WebSocket one: remotecommand
		// v5 for exec and attach, SPDY tunnelled in WebSocket for
		// port-forward.
		for _, transport := range []string{"spdy", "websocket"} {
			name := m.name + "/" + transport
			flag := "--transport=" + transport
			t.Run(name+"/exec reports output and the exit code", func(t *testing.T) {
				out, err := crictl("exec", flag, web, "sh", "-c", "echo out-"+name+"; echo err-"+name+" >&2; exit 3").CombinedOutput()
				for _, want := range []string{"out-" + name + "\n", "err-" + name + "\n", "exit code 3"} {
					if !strings.Contains(string(out), want) {
						t.Errorf("output lacks %q (%v):\n%s", want, err, out)
					}
				}
				if err == nil {
					t.Errorf("crictl exec succeeded for a command that exited 3:\n%s", out)
				}
			})
			t.Run(name+"/exec -i, stdin closes", func(t *testing.T) {
				cmd := crictl("exec", flag, "-i", web, "sh", "-c", "cat; echo eof-seen")
				cmd.Stdin = strings.NewReader("piped-" + name + "\n")
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "piped-"+name+"\neof-seen") {
					t.Fatalf("%v: %s", err, out)
				}
			})
			t.Run(name+"/exec -it with a terminal and its size", func(t *testing.T) {
				line := "stty rows 21 cols 71; exec " + shellQuote(m.wrap(d.crictlArgs("exec", flag, "-it", web, "sh")...))
				cmd := u.command("script", "-qc", line, "/dev/null")
				cmd.Stdin = &slowReader{delay: 2 * time.Second, data: []byte("tty; stty size; exit 5\n")}
				out, _ := cmd.CombinedOutput()
				for _, want := range []string{"/dev/pts/", "21 71", "exit code 5"} {
					if !strings.Contains(string(out), want) {
						t.Errorf("output lacks %q:\n%s", want, out)
					}
				}
			})
			t.Run(name+"/attach sees the container's output", func(t *testing.T) {
				cmd := crictl("attach", flag, ticker)
				out := &lockedBuffer{}
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { cmd.Process.Kill(); cmd.Wait() }()
				waitOutput(t, out, "tick-", 10*time.Second)
			})
			t.Run(name+"/port-forward into the pod", func(t *testing.T) {
				local := freeHostPort(t)
				// Two requests over one forward: each is its own stream pair.
				script := fmt.Sprintf("%s & pf=$!; for i in $(seq 50); do out=$(busybox wget -qO- http://127.0.0.1:%d/ 2>/dev/null) && break; sleep 0.2; done; again=$(busybox wget -qO- http://127.0.0.1:%d/ 2>&1); kill $pf; echo \"$out $again\"",
					shellQuote(d.crictlArgs("port-forward", flag, podID, fmt.Sprintf("%d:8080", local))), local, local)
				out, err := u.command(m.wrap("sh", "-c", script)...).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "hello-from-pod hello-from-pod") {
					t.Fatalf("%v: %s", err, out)
				}
			})
		}
	}

	t.Run("exec into unknown and stopped containers", func(t *testing.T) {
		_, err := c.rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "nonexistent", Cmd: []string{"true"}, Stdout: true})
		if status.Code(err) != codes.NotFound {
			t.Errorf("unknown container: %v", err)
		}
		stopped := run(&runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "short"},
			Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
			Command:  []string{"true"},
			LogPath:  "short.log",
		})
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := c.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: stopped})
			if err == nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("container did not exit: %v %v", st, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, err = c.rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: stopped, Cmd: []string{"true"}, Stdout: true})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("stopped container exec: %v", err)
		}
		_, err = c.rs.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: stopped, Stdout: true})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("stopped container attach: %v", err)
		}
	})

	// Clients that die mid-exec: 200 over SPDY, and fewer over WebSocket
	// (the same runtime; what differs is how the server notices).
	for _, run := range []struct {
		transport string
		total     int
	}{{"spdy", 200}, {"websocket", 60}} {
		t.Run(fmt.Sprintf("%d aborted execs over %s leave nothing behind", run.total, run.transport), func(t *testing.T) {
			abortedExecs(t, d, u, web, run.transport, run.total)
		})
	}
}

// abortedExecs starts total execs of a long sleep in batches, kills each
// batch's clients with SIGKILL once all of it runs, and waits for crib's
// child to be back to the processes and descriptors it had.
func abortedExecs(t *testing.T, d *daemon, u testUser, web, transport string, total int) {
	child := d.childPID(t)
	before := streamFootprint(child, "sleep 4242")
	const batch = 20
	for done := 0; done < total; done += batch {
		var cmds []*exec.Cmd
		for range batch {
			cmd := u.command(d.crictlArgs("exec", "--transport="+transport, web, "sleep", "4242")...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		// Until every exec runs, then the clients die without a word.
		waitCount(t, func() int { return countProcs("sleep 4242") }, batch, 20*time.Second)
		for _, cmd := range cmds {
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		after := streamFootprint(child, "sleep 4242")
		if after.procs == 0 && after.fds <= before.fds && after.children <= before.children {
			t.Logf("before %+v after %+v", before, after)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: before %+v after %+v\n%s", before, after, d.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// footprint is what an exec could leave behind in crib's child.
type footprint struct {
	fds, threads, children, procs int
}

func streamFootprint(pid int, marker string) footprint {
	var f footprint
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	f.fds = len(fds)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			f.threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		f.children += len(strings.Fields(string(data)))
	}
	f.procs = countProcs(marker)
	return f
}

// countProcs counts processes whose command line is exactly marker.
func countProcs(marker string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.TrimRight(strings.ReplaceAll(string(data), "\x00", " "), " ") == marker {
			n++
		}
	}
	return n
}

// waitCount waits until count() reaches batch (the processes started in
// this round: earlier rounds' are already gone).
func waitCount(t *testing.T, count func() int, batch int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for count() < batch {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d execs started", count(), batch)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitOutput(t *testing.T, b *lockedBuffer, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q: %s", s, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slowReader gives its data after a delay (a person typing once the
// shell is up), then EOF.
type slowReader struct {
	delay time.Duration
	data  []byte
	sent  bool
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.sent {
		time.Sleep(2 * time.Second) // leave the session time to end by itself
		return 0, io.EOF
	}
	time.Sleep(r.delay)
	r.sent = true
	return copy(p, r.data), nil
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
