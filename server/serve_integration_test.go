//go:build integration

package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/idmap"
)

// These tests start the real crib binary as an unprivileged user, the way
// `make run` does, and talk to it from the host namespaces. make integration
// builds crib and crictl and prepares the user (scripts/host-setup.sh).

type testUser struct {
	name, home string
	uid, gid   int
}

func lookupTestUser(t *testing.T) testUser {
	t.Helper()
	name := os.Getenv("CRIB_TEST_USER")
	if name == "" || os.Getenv("CRIB_BIN") == "" {
		t.Fatal("run through `make integration` (needs CRIB_BIN, CRICTL_BIN, CRIB_TEST_USER)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests run as root and start crib as CRIB_TEST_USER")
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return testUser{name: name, home: u.HomeDir, uid: uid, gid: gid}
}

// asUser builds a command that runs as the test user with a login-like
// environment.
func (u testUser) command(args ...string) *exec.Cmd {
	full := append([]string{
		"--reuid=" + strconv.Itoa(u.uid), "--regid=" + strconv.Itoa(u.gid), "--init-groups",
		"env", "-i", "HOME=" + u.home, "USER=" + u.name, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"XDG_RUNTIME_DIR=" + u.runtimeDir(),
	}, args...)
	return exec.Command("setpriv", full...)
}

func (u testUser) runtimeDir() string { return fmt.Sprintf("/run/user/%d", u.uid) }

type daemon struct {
	cmd      *exec.Cmd
	out      *bytes.Buffer
	root     string
	runroot  string
	socket   string
	exited   chan error
	userInfo testUser
	extra    []string // more serve flags
	bin      string   // the crib binary; "" is CRIB_BIN
}

func (d *daemon) args(extra ...string) []string {
	bin := d.bin
	if bin == "" {
		bin = os.Getenv("CRIB_BIN")
	}
	return append([]string{bin, "serve", "--root", d.root, "--runroot", d.runroot}, extra...)
}

func newDaemon(t *testing.T, u testUser) *daemon {
	t.Helper()
	tag := fmt.Sprintf("it-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	d := &daemon{
		root:     filepath.Join(u.home, ".local/share", "crib-"+tag),
		runroot:  filepath.Join(u.runtimeDir(), "crib-"+tag),
		userInfo: u,
	}
	d.socket = filepath.Join(d.runroot, "crib.sock")
	t.Cleanup(func() {
		// A test that failed midway may have left pods: remove them through
		// CRI while crib still runs, so no container outlives the test.
		d.removeAllPods()
		d.stop(t)
		d.killHolder()
		os.RemoveAll(d.root)
		os.RemoveAll(d.runroot)
	})
	return d
}

func (d *daemon) start(t *testing.T) {
	t.Helper()
	d.out = &bytes.Buffer{}
	d.cmd = d.userInfo.command(d.args(append([]string{"--log-level", "debug"}, d.extra...)...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(d.socket); err == nil {
			if c, err := grpcDial(d.socket); err == nil {
				_, verr := runtimeapi.NewRuntimeServiceClient(c).Version(context.Background(), &runtimeapi.VersionRequest{})
				c.Close()
				if verr == nil {
					return
				}
			}
		}
		select {
		case err := <-d.exited:
			t.Fatalf("crib exited during start: %v\n%s", err, d.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("crib did not serve within 20s:\n%s", d.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) stop(t *testing.T) {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("crib did not stop on SIGTERM within 30s:\n%s", d.out)
	}
}

func grpcDial(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func (d *daemon) childPID(t *testing.T) int {
	data, err := os.ReadFile(filepath.Join(d.runroot, "crib.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func TestIntegrationServeRootless(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.start(t)

	t.Run("socket is 0600 and owned by the user", func(t *testing.T) {
		fi, err := os.Stat(d.socket)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o600 || int(st.Uid) != u.uid {
			t.Fatalf("socket mode %v uid %d, want 0600 uid %d", fi.Mode().Perm(), st.Uid, u.uid)
		}
	})

	t.Run("CRI calls from the host namespaces", func(t *testing.T) {
		c, err := grpcDial(d.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rs := runtimeapi.NewRuntimeServiceClient(c)
		ctx := context.Background()
		v, err := rs.Version(ctx, &runtimeapi.VersionRequest{})
		if err != nil || v.RuntimeName != "crib" || v.RuntimeApiVersion != "v1" {
			t.Fatalf("Version: %v %v", v, err)
		}
		st, err := rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]*runtimeapi.RuntimeCondition{}
		for _, c := range st.Status.Conditions {
			kinds[c.Type] = c
		}
		for _, k := range []string{runtimeapi.RuntimeReady, runtimeapi.NetworkReady} {
			c := kinds[k]
			if c == nil {
				t.Fatalf("Status lacks %s: %v", k, st.Status)
			}
			if !c.Status && (c.Reason == "" || c.Message == "") {
				t.Errorf("%s is false without a reason and message: %v", k, c)
			}
		}
		for _, key := range []string{"config", "host", "rootless"} {
			if st.Info[key] == "" {
				t.Errorf("verbose Status lacks %q", key)
			}
		}
		if st.Info["rootless"] != "true" {
			t.Errorf("rootless = %q", st.Info["rootless"])
		}
		rc, err := rs.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
		if err != nil || rc.Linux == nil {
			t.Fatalf("RuntimeConfig: %v %v", rc, err)
		}
	})

	t.Run("crictl version and info as the user", func(t *testing.T) {
		for _, sub := range []string{"version", "info"} {
			out, err := u.command(os.Getenv("CRICTL_BIN"), "--runtime-endpoint", "unix://"+d.socket, sub).CombinedOutput()
			if err != nil {
				t.Fatalf("crictl %s: %v\n%s", sub, err, out)
			}
			if sub == "version" && !strings.Contains(string(out), "RuntimeName:  crib") {
				t.Fatalf("crictl version:\n%s", out)
			}
			if sub == "info" && !strings.Contains(string(out), "RuntimeReady") {
				t.Fatalf("crictl info:\n%s", out)
			}
		}
	})

	t.Run("uid_map inside is the user plus every subordinate range", func(t *testing.T) {
		pid := d.childPID(t)
		for _, f := range []struct{ mapFile, subFile string }{{"uid_map", "/etc/subuid"}, {"gid_map", "/etc/subgid"}} {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f.mapFile))
			if err != nil {
				t.Fatal(err)
			}
			hostID := u.uid
			if f.mapFile == "gid_map" {
				hostID = u.gid
			}
			// host-setup.sh appends a second range to a user with
			// useradd's 65536 ids: crib maps them all, one after another.
			sub, err := os.Open(f.subFile)
			if err != nil {
				t.Fatal(err)
			}
			ranges, err := idmap.Lookup(sub, u.name, u.uid)
			sub.Close()
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, m := range idmap.Build(hostID, ranges) {
				want = append(want, fmt.Sprintf("%d %d %d", m.ContainerID, m.HostID, m.Count))
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				got = append(got, strings.Join(strings.Fields(line), " "))
			}
			if strings.Join(got, "/") != strings.Join(want, "/") {
				t.Fatalf("%s = %q, want %q", f.mapFile, got, want)
			}
		}
	})

	t.Run("a second instance on the same roots refuses", func(t *testing.T) {
		out, err := u.command(d.args()...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "already running") {
			t.Fatalf("second crib: err=%v\n%s", err, out)
		}
	})

	t.Run("unshare joins crib's namespaces as root", func(t *testing.T) {
		out, err := u.command(os.Getenv("CRIB_BIN"), "unshare", "--runroot", d.runroot, "--", "sh", "-c", "id -u; readlink /proc/self/ns/net; /bin/pwd -P").CombinedOutput()
		if err != nil {
			t.Fatalf("unshare: %v\n%s", err, out)
		}
		want, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", d.childPID(t)))
		wd, _ := os.Getwd()
		if !strings.HasPrefix(string(out), "0\n") || !strings.Contains(string(out), want) ||
			!strings.HasSuffix(string(out), wd+"\n") {
			t.Fatalf("unshare printed %q, want uid 0 and %s", out, want)
		}
	})

	t.Run("SIGTERM stops cleanly", func(t *testing.T) {
		child := d.childPID(t)
		holder := d.holderPID(t)
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.exited:
			if err != nil {
				t.Fatalf("crib exited with %v:\n%s", err, d.out)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("crib did not stop:\n%s", d.out)
		}
		if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
		if err := syscall.Kill(child, 0); err == nil {
			t.Errorf("child %d still alive after stop", child)
		}
		// No pod is left, so the namespace holder goes too.
		if state := procState(holder); state != "" && state != "Z" {
			t.Errorf("namespace holder %d still alive (%s) after stop with no pods", holder, state)
		}
	})
}

func TestIntegrationStaleSocketReplaced(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.start(t)
	// SIGKILL the parent: the child dies with it and leaves the socket.
	d.cmd.Process.Kill()
	<-d.exited
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(d.childPID(t), 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(d.socket); err != nil {
		t.Fatalf("expected the killed crib to leave its socket: %v", err)
	}
	d.cmd = nil
	d.start(t)
}

func (d *daemon) holderPID(t *testing.T) int {
	data, err := os.ReadFile(filepath.Join(d.runroot, "holder.json"))
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	return h.PID
}

// removeAllPods removes every pod of a running crib, best effort.
func (d *daemon) removeAllPods() {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	c, err := grpcDial(d.socket)
	if err != nil {
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs := runtimeapi.NewRuntimeServiceClient(c)
	pods, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
	}
}

// killHolder ends what a crib killed with SIGKILL leaves on purpose: the
// namespace holder and its outbound helper.
func (d *daemon) killHolder() {
	data, err := os.ReadFile(filepath.Join(d.runroot, "holder.json"))
	if err != nil {
		return
	}
	var h struct {
		PID       int `json:"pid"`
		HelperPID int `json:"helperPid"`
	}
	if json.Unmarshal(data, &h) != nil {
		return
	}
	for _, pid := range []int{h.HelperPID, h.PID} {
		if pid > 0 && procState(pid) != "" {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// procState is the state letter of a process, "" when it is gone.
func procState(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return strings.Fields(s[i+1:])[0]
}

func TestIntegrationServeRootful(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	dir := t.TempDir()
	d := &daemon{root: filepath.Join(dir, "root"), runroot: filepath.Join(dir, "run")}
	d.socket = filepath.Join(d.runroot, "crib.sock")
	d.out = &bytes.Buffer{}
	args := d.args()
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := grpcDial(d.socket)
		if err == nil {
			st, err := runtimeapi.NewRuntimeServiceClient(c).Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
			c.Close()
			if err == nil {
				if st.Info["rootless"] != "false" {
					t.Fatalf("rootful crib says rootless=%q", st.Info["rootless"])
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rootful crib did not serve:\n%s", d.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(d.runroot, "crib.pid")); err == nil {
		t.Fatal("rootful crib started a namespaced child")
	}
}

func TestIntegrationDoctorAsUser(t *testing.T) {
	u := lookupTestUser(t)
	out, err := u.command(os.Getenv("CRIB_BIN"), "doctor", "--json").Output()
	if err != nil {
		t.Fatalf("crib doctor --json as %s: %v\n%s", u.name, err, out)
	}
	var report struct {
		OK     bool `json:"ok"`
		Checks []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("doctor JSON: %v\n%s", err, out)
	}
	if !report.OK || len(report.Checks) < 10 {
		t.Fatalf("doctor report: %s", out)
	}
	// A user without subordinate ids must be refused with the fix.
	nobody := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"env", "-i", "HOME=/nonexistent", "PATH=/usr/bin:/bin:/usr/sbin", "XDG_RUNTIME_DIR=/tmp", os.Getenv("CRIB_BIN"), "doctor")
	out, err = nobody.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "usermod --add-subuids") {
		t.Fatalf("doctor as nobody: err=%v\n%s", err, out)
	}
}
