package runtime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime/cgroups"
)

// The container tests run the real conmon and runc on busybox rootfses
// built from the host's busybox. As root they run twice: once rootful, and
// once more (TestRootless) inside a user namespace the test makes, mapping
// its root to crib-test's subordinate ids (100000…), where cgroups are not
// writable — crib's rootless, unconfined mode.

const rootlessChildEnv = "CRIB_RUNTIME_TEST_ROOTLESS_CHILD"

var testReaper *Reaper

func TestMain(m *testing.M) {
	// The test binary plays crib's daemon: a subreaper that reaps the
	// double-forked monitors.
	r, err := StartReaper(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testReaper = r
	if err := hideUnifiedForCrun(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func inRootlessChild() bool { return os.Getenv(rootlessChildEnv) == "1" }

// needRuntime skips unless conmon and runc can run containers here.
func needRuntime(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (or the user namespace TestRootless makes) to run containers")
	}
	for _, bin := range []string{"conmon", testHandler(), "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed", bin)
		}
	}
}

// testEnv is one Manager with its directories, rootfs and cgroups.
type testEnv struct {
	t        *testing.T
	m        *Manager
	opts     Options
	rootfs   string
	host     HostInfo
	rootless bool
	cg       cgroups.Manager // nil: no cgroups
	pod      string          // pod cgroup path
	logDir   string
}

// newEnv makes a Manager. withCgroups asks for a delegated v1 subtree made
// under the test's own cgroups (rootful only; skipped when unavailable).
func newEnv(t *testing.T, withCgroups bool) *testEnv {
	t.Helper()
	needRuntime(t)
	host, err := ProbeHost()
	if err != nil {
		t.Fatal(err)
	}
	host.RecursiveReadOnly = false // runc 1.1 knows no "rro"
	e := &testEnv{t: t, host: host, rootless: inRootlessChild(), logDir: t.TempDir()}
	e.rootfs = testRootfs(t)
	if withCgroups {
		if e.rootless {
			t.Skip("no cgroups in the rootless test namespace")
		}
		e.cg, e.pod = testCgroups(t)
	}
	runRoot := t.TempDir()
	e.opts = Options{
		Root:     t.TempDir(),
		RunRoot:  runRoot,
		Handlers: []Handler{{Name: testHandler(), Path: mustLookPath(t, testHandler())}},
		Rootless: e.rootless,
		Host:     &host,
		Reaper:   testReaper,
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if e.cg != nil {
		e.opts.Cgroups = e.cg
	}
	e.m = e.newManager()
	t.Cleanup(e.removeAll)
	return e
}

func (e *testEnv) newManager() *Manager {
	m, err := New(e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(m.Close)
	return m
}

// removeAll removes every container the test left, as a kubelet would.
func (e *testEnv) removeAll() {
	for _, c := range e.m.List() {
		if err := e.m.Remove(context.Background(), c.ID); err != nil {
			e.t.Errorf("cleanup: removing %s: %v", c.ID, err)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mustLookPath(t *testing.T, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s is not installed", bin)
	}
	return p
}

// testRootfs is a busybox rootfs with the applets the tests call.
func testRootfs(t *testing.T) string {
	t.Helper()
	root := busyboxRootfs(t, filepath.Join(testdataDir(t), "rootfs/basic/etc"))
	bb, _ := exec.LookPath("busybox")
	for _, applet := range []string{"sleep", "dd", "head", "echo", "printf", "yes", "kill", "true", "false", "ls", "wc", "tail"} {
		if err := os.Symlink(bb, filepath.Join(root, "bin", applet)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// testCgroups makes a delegated v1 subtree below the test's own cgroup of
// every controller, detects the cgroups manager on it and makes a pod
// cgroup. Everything is removed after the test.
func testCgroups(t *testing.T) (cgroups.Manager, string) {
	t.Helper()
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		t.Skip("no cgroup v1 memory controller here")
	}
	parent := fmt.Sprintf("crib-rt-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	own := ownCgroups(t)
	var made []string
	for c, path := range own {
		dir := filepath.Join("/sys/fs/cgroup", c, path, parent)
		if _, err := os.Stat(filepath.Dir(dir)); err != nil {
			continue
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Skipf("cannot make a test cgroup: %v", err)
		}
		made = append(made, dir)
		if c == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, _ := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
				_ = os.WriteFile(filepath.Join(dir, f), v, 0o644)
			}
		}
	}
	t.Cleanup(func() {
		for _, d := range made {
			removeCgroupTree(t, d)
		}
	})
	cg, reason, err := cgroups.Detect(cgroups.DetectOptions{Manager: "cgroupfs", Parent: parent})
	if err != nil {
		t.Skipf("no usable cgroups: %v", err)
	}
	t.Logf("cgroups: %s", reason)
	pod, err := cg.CreatePod("test-pod", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cg.RemovePod(pod) })
	return cg, pod
}

// ownCgroups maps each v1 controller mount directory to the test's cgroup.
func ownCgroups(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || parts[1] == "" || strings.HasPrefix(parts[1], "name=") {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// removeCgroupTree removes a cgroup directory tree bottom-up (cgroupfs
// directories go with rmdir only).
func removeCgroupTree(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(t, filepath.Join(dir, e.Name()))
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !os.IsNotExist(err) {
		t.Logf("removing test cgroup %s: %v", dir, err)
	}
}

// config is a CRI container config running cmd.
func config(name string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Command:  cmd,
		Labels:   map[string]string{"test": name},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

var testSandbox = &runtimeapi.PodSandboxConfig{
	Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Uid: "uid-1", Namespace: "default"},
	Hostname: "pod",
}

func (e *testEnv) spec(id string, cfg *runtimeapi.ContainerConfig) *specs.Spec {
	e.t.Helper()
	cgroup := ""
	if e.cg != nil {
		cgroup = e.cg.ContainerPath(e.pod, id)
	}
	s, err := GenerateSpec(SpecInput{
		ID: id, SandboxID: "pod1", Config: cfg, Sandbox: testSandbox,
		RootfsPath:  e.rootfs,
		Namespaces:  PodNamespaces{Network: NamespacePath{Host: true}, IPC: NamespacePath{Host: true}, UTS: NamespacePath{Host: true}},
		CgroupsPath: cgroup,
		Rootless:    e.rootless,
		Host:        e.host,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *testEnv) createOptions(id string, cfg *runtimeapi.ContainerConfig) CreateOptions {
	return CreateOptions{
		ID: id, SandboxID: "pod1", Name: "k8s_" + id, Config: cfg, SandboxConfig: testSandbox,
		Spec:    e.spec(id, cfg),
		LogPath: filepath.Join(e.logDir, id, "0.log"),
	}
}

// create creates a container from cfg and fails the test on error.
func (e *testEnv) create(id string, cfg *runtimeapi.ContainerConfig) *Container {
	e.t.Helper()
	c, err := e.m.Create(context.Background(), e.createOptions(id, cfg))
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	return c
}

// createLaunched creates a container and launches it (its monitor and the
// runtime's create, as StartContainer does first) without starting it: its
// process exists and waits for the start.
func (e *testEnv) createLaunched(id string, cfg *runtimeapi.ContainerConfig) *Container {
	e.t.Helper()
	e.create(id, cfg)
	en, err := e.m.lookup(id)
	if err != nil {
		e.t.Fatal(err)
	}
	rt, _ := e.m.runtimeFor("")
	if err := e.m.launch(context.Background(), en, rt); err != nil {
		e.t.Fatalf("launch %s: %v", id, err)
	}
	c, err := e.m.Get(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// run creates and starts a container running cmd.
func (e *testEnv) run(id string, cmd ...string) *Container {
	e.t.Helper()
	e.create(id, config(id, cmd...))
	if err := e.m.Start(context.Background(), id); err != nil {
		e.t.Fatalf("start %s: %v", id, err)
	}
	c, err := e.m.Get(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// waitState waits until the container reaches want.
func (e *testEnv) waitState(id string, want State, d time.Duration) *Container {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := e.m.Status(id)
		if err != nil {
			e.t.Fatal(err)
		}
		if c.State == want {
			return c
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("container %s is %s after %s, want %s", id, c.State, d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until the container's log contains s and returns it.
func (e *testEnv) waitLog(c *Container, s string) string {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(c.LogPath)
		if strings.Contains(string(data), s) {
			return string(data)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("log of %s lacks %q:\n%s", c.ID, s, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	// PID 1 ignores signals it has no handler for: the trap makes it obey.
	c := e.create("life", config("life", "sh", "-c", "trap 'exit 143' TERM; echo hello; sleep 100 & wait"))
	if c.State != StateCreated || c.Pid != 0 || c.MonitorPid != 0 {
		t.Fatalf("after create: state %s pid %d monitor %d, want created with no process", c.State, c.Pid, c.MonitorPid)
	}
	if err := e.m.Start(ctx, "life"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start(ctx, "life"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second start: %v, want failed precondition", err)
	}
	c, _ = e.m.Get("life")
	if c.State != StateRunning || c.StartedAt.IsZero() {
		t.Fatalf("after start: %+v", c)
	}
	e.waitLog(c, "stdout F hello\n")
	if r, err := e.m.Resolve("lif"); err != nil || r.ID != "life" {
		t.Fatalf("resolving a prefix of the running container: %v, %v", r, err)
	}
	start := time.Now()
	if err := e.m.Stop(ctx, "life", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop of a container that obeys SIGTERM took %s", took)
	}
	c, _ = e.m.Get("life")
	if c.State != StateExited || c.ExitCode != 128+15 || c.Reason != ReasonError || c.FinishedAt.Before(c.StartedAt) {
		t.Errorf("after stop: state %s code %d reason %s started %s finished %s", c.State, c.ExitCode, c.Reason, c.StartedAt, c.FinishedAt)
	}
	if err := e.m.Stop(ctx, "life", time.Second); err != nil {
		t.Errorf("stopping a stopped container: %v", err)
	}
	if err := e.m.Remove(ctx, "life"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Get("life"); !errdefs.IsNotFound(err) {
		t.Errorf("get after remove: %v", err)
	}
	if err := e.m.Remove(ctx, "life"); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if err := e.m.Stop(ctx, "life", time.Second); !errdefs.IsNotFound(err) {
		t.Errorf("stop of a removed container: %v, want not found", err)
	}
	assertNoTraces(t, e, "life")
}

// assertNoTraces checks nothing of the container is left: bundle, record,
// exit file, attach link, runtime state, monitor.
func assertNoTraces(t *testing.T, e *testEnv, id string) {
	t.Helper()
	if _, err := e.m.Resolve(id); !errdefs.IsNotFound(err) {
		t.Errorf("resolving %s: %v, want not found", id, err)
	}
	f := e.m.files(id)
	for _, p := range []string{f.bundle, f.exitFile, f.attachLink, e.m.store.path(id), filepath.Join(e.m.store.dir, id), filepath.Join(e.opts.RunRoot, testHandler(), id)} {
		// Lstat: conmon's attach link dangles once the bundle is gone.
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left", p)
		}
	}
	for _, pid := range allPids() {
		if e.isMonitor(pid, id) && monitorsBundle(pid, f.bundle) {
			t.Errorf("conmon %d for %s is left", pid, id)
		}
	}
}

// monitorsBundle tells whether conmon pid was started for bundle: tests
// of other checkouts on the same machine reuse ids such as "bad".
func monitorsBundle(pid int, bundle string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), "\x00"+bundle+"\x00")
}

func TestExitCodeAndReason(t *testing.T) {
	e := newEnv(t, false)
	for _, tc := range []struct {
		id     string
		cmd    []string
		code   int32
		reason string
	}{
		{"exit0", []string{"true"}, 0, ReasonCompleted},
		{"exit3", []string{"sh", "-c", "exit 3"}, 3, ReasonError},
		{"killed", []string{"sh", "-c", "sleep 100 & kill -9 $!; wait $!"}, 137, ReasonError},
	} {
		t.Run(tc.id, func(t *testing.T) {
			e.run(tc.id, tc.cmd...)
			c := e.waitState(tc.id, StateExited, 10*time.Second)
			if c.ExitCode != tc.code || c.Reason != tc.reason {
				t.Errorf("exit code %d reason %q, want %d %q", c.ExitCode, c.Reason, tc.code, tc.reason)
			}
			if c.FinishedAt.IsZero() || c.FinishedAt.Before(c.StartedAt) {
				t.Errorf("finished %s, started %s", c.FinishedAt, c.StartedAt)
			}
		})
	}
}

func TestStopSignalAndTimeout(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	// Traps TERM: only SIGKILL ends it. USR1 is its stop signal in the
	// second case and ends it with "usr1" in the log.
	script := `trap 'echo term' TERM; trap 'echo usr1; exit 7' USR1; echo ready; while true; do sleep 0.1; done`

	t.Run("escalates to SIGKILL", func(t *testing.T) {
		c := e.run("trap-term", "sh", "-c", script)
		e.waitLog(c, "ready")
		start := time.Now()
		if err := e.m.Stop(ctx, c.ID, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		c, _ = e.m.Get(c.ID)
		if c.ExitCode != 137 || took < 2*time.Second || took > 8*time.Second {
			t.Errorf("exit code %d after %s, want 137 after about 2s", c.ExitCode, took)
		}
		e.waitLog(c, "term")
	})
	t.Run("image stop signal", func(t *testing.T) {
		o := e.createOptions("stopsig", config("stopsig", "sh", "-c", script))
		o.StopSignal = "SIGUSR1"
		if _, err := e.m.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		if err := e.m.Start(ctx, "stopsig"); err != nil {
			t.Fatal(err)
		}
		c, _ := e.m.Get("stopsig")
		e.waitLog(c, "ready")
		if err := e.m.Stop(ctx, "stopsig", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		c, _ = e.m.Get("stopsig")
		if c.ExitCode != 7 {
			t.Errorf("exit code %d, want 7 from the USR1 trap", c.ExitCode)
		}
	})
	t.Run("timeout 0 kills at once", func(t *testing.T) {
		c := e.run("kill-now", "sh", "-c", script)
		e.waitLog(c, "ready")
		start := time.Now()
		if err := e.m.Stop(ctx, c.ID, 0); err != nil {
			t.Fatal(err)
		}
		c, _ = e.m.Get(c.ID)
		if took := time.Since(start); c.ExitCode != 137 || took > 2*time.Second {
			t.Errorf("exit code %d after %s, want 137 at once", c.ExitCode, took)
		}
	})
	t.Run("remove stops a running container", func(t *testing.T) {
		e.run("remove-running", "sleep", "100")
		if err := e.m.Remove(ctx, "remove-running"); err != nil {
			t.Fatal(err)
		}
		assertNoTraces(t, e, "remove-running")
	})
	t.Run("stop of a created container", func(t *testing.T) {
		e.create("created-only", config("created-only", "sleep", "100"))
		if err := e.m.Stop(ctx, "created-only", time.Second); err != nil {
			t.Fatal(err)
		}
		// Nothing runs before Start: the stop leaves it created.
		c, _ := e.m.Get("created-only")
		if c.State != StateCreated || c.Pid != 0 {
			t.Errorf("state %s pid %d after stop, want created with no process", c.State, c.Pid)
		}
		if err := e.m.Remove(ctx, "created-only"); err != nil {
			t.Fatal(err)
		}
		assertNoTraces(t, e, "created-only")
	})
}

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
		ok   bool
	}{
		{"", syscall.SIGTERM, true},
		{"SIGQUIT", syscall.SIGQUIT, true},
		{"quit", syscall.SIGQUIT, true},
		{"9", syscall.SIGKILL, true},
		{"SIGRTMIN+3", syscall.Signal(37), true},
		{"SIGNOPE", 0, false},
		{"0", 0, false},
		{"99", 0, false},
	} {
		got, err := parseSignal(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseSignal(%q) = %v, %v; want %v ok=%t", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestStartFailure: a spec the runtime refuses fails at Start (Create
// runs no runtime): the error is returned, the container is exited with
// StartError, and no monitor, runtime state or process is left; Remove
// then leaves nothing.
func TestStartFailure(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	o := e.createOptions("bad", config("bad", "true"))
	// Both runtimes fail the create: the mount's source does not exist.
	o.Spec.Mounts = append(o.Spec.Mounts, specs.Mount{Destination: "/missing", Type: "bind", Source: "/nonexistent/crib-test", Options: []string{"rbind"}})
	if _, err := e.m.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	err := e.m.Start(ctx, "bad")
	if err == nil {
		t.Fatal("start with a bad spec succeeded")
	}
	t.Logf("start failed as it should: %v", err)
	c, _ := e.m.Get("bad")
	if c.State != StateExited || c.Reason != ReasonStartError || c.Message == "" || c.Pid != 0 {
		t.Errorf("after the failed start: %s %s %q pid %d", c.State, c.Reason, c.Message, c.Pid)
	}
	f := e.m.files("bad")
	if _, err := os.Lstat(filepath.Join(e.opts.RunRoot, testHandler(), "bad")); err == nil {
		t.Error("the runtime's state is left after the failed start")
	}
	for _, pid := range allPids() {
		if e.isMonitor(pid, "bad") && monitorsBundle(pid, f.bundle) {
			t.Errorf("monitor %d is left after the failed start", pid)
		}
	}
	if err := e.m.Remove(ctx, "bad"); err != nil {
		t.Fatal(err)
	}
	assertNoTraces(t, e, "bad")
	// The id is free again.
	e.run("bad", "true")
}

func TestCreateRejects(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	e.create("dup", config("dup", "true"))
	if _, err := e.m.Create(ctx, e.createOptions("dup", config("dup", "true"))); !errdefs.IsAlreadyExists(err) {
		t.Errorf("duplicate id: %v", err)
	}
	o := e.createOptions("colon", config("colon", "true"))
	o.LogPath = "/tmp/a:b.log"
	if _, err := e.m.Create(ctx, o); !errdefs.IsInvalidArgument(err) {
		t.Errorf("log path with ':': %v", err)
	}
	o = e.createOptions("nohandler", config("nohandler", "true"))
	o.Handler = "kata"
	if _, err := e.m.Create(ctx, o); !errdefs.IsNotFound(err) {
		t.Errorf("unknown handler: %v", err)
	}
}

// TestRootless runs the container tests again inside a user namespace
// whose root is crib-test's subordinate uid 100000: runc takes its
// rootless path and no cgroup is writable.
func TestRootless(t *testing.T) {
	if inRootlessChild() {
		t.Skip("already inside")
	}
	needRuntime(t)
	if testing.Short() {
		t.Skip("short")
	}
	// The child (host uid 100000) must be able to execute the binary.
	dir, err := os.MkdirTemp("", "crib-rootless-test")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	bin := filepath.Join(dir, "runtime.test")
	copyFile(t, self, bin)
	run := "^(TestLifecycle|TestExitCodeAndReason|TestStopSignalAndTimeout|TestStopEndsEveryProcess|TestCensusEndsTheNamespace|TestCreateRollback|TestExecSync.*|TestLogs.*|TestStats.*|TestRecover.*)$"
	cmd := exec.Command(bin, "-test.run", run, "-test.v", "-test.timeout", "10m")
	wd, _ := os.Getwd()
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), rootlessChildEnv+"=1", "TMPDIR=/tmp")
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: ids, GidMappings: ids, GidMappingsEnableSetgroups: true,
		// Become the namespace's root, host uid 100000, as crib's child is.
		Credential: &syscall.Credential{Uid: 0, Gid: 0},
	}
	out, err := cmd.CombinedOutput()
	t.Logf("rootless run:\n%s", out)
	if err != nil {
		t.Fatalf("rootless tests failed: %v", err)
	}
	if strings.Contains(string(out), "--- SKIP: TestLifecycle") {
		t.Error("the rootless lifecycle test was skipped")
	}
}

// isMonitor asks the default runtime whether pid monitors container id.
func (e *testEnv) isMonitor(pid int, id string) bool {
	rt, err := e.m.runtimeFor("")
	return err == nil && rt.Monitoring(pid, id)
}
