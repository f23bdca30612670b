package runtime

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime/oci"
	"github.com/crib-dev/crib/runtime/oci/ocifake"
)

// The life-cycle tests here drive Manager through ocifake: no root, no
// runc, no conmon. The fake plays the monitor's visible part (the exit
// file), so exits travel the real path (inotify, handleExit).

// fakeEnv is a Manager on a fake runtime.
type fakeEnv struct {
	m      *Manager
	rt     *ocifake.Runtime
	logDir string
}

func newFakeEnv(t *testing.T) *fakeEnv {
	t.Helper()
	f := &fakeEnv{logDir: t.TempDir()}
	m, err := New(Options{
		Root: t.TempDir(), RunRoot: t.TempDir(),
		Handlers: []Handler{{Name: "runc", Path: "/nonexistent/runc"}},
		Host:     &HostInfo{},
		Reaper:   testReaper,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewRuntime: func(c oci.Config) (oci.Runtime, error) {
			f.rt = ocifake.New(c)
			return f.rt, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	f.m = m
	return f
}

func (f *fakeEnv) options(id string) CreateOptions {
	return CreateOptions{
		ID: id, SandboxID: "pod1", Name: "k8s_" + id, Config: config(id, "sleep", "1000"), SandboxConfig: testSandbox,
		Spec:    &specs.Spec{Process: &specs.Process{Args: []string{"sleep", "1000"}, Cwd: "/"}, Linux: &specs.Linux{}},
		LogPath: filepath.Join(f.logDir, id, "0.log"),
	}
}

func (f *fakeEnv) create(t *testing.T, id string) {
	t.Helper()
	if _, err := f.m.Create(context.Background(), f.options(id)); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeEnv) running(t *testing.T, id string) {
	t.Helper()
	f.create(t, id)
	if err := f.m.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

// state waits until the container's recorded state is want.
func (f *fakeEnv) state(t *testing.T, id string, want State) *Container {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := f.m.Status(id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == want || time.Now().After(deadline) {
			if c.State != want {
				t.Fatalf("container %s is %s, want %s", id, c.State, want)
			}
			return c
		}
	}
}

// called reports whether the fake saw every call, in order.
func called(rt *ocifake.Runtime, want ...string) bool {
	calls, i := rt.Calls(), 0
	for _, c := range calls {
		if i < len(want) && c == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestFakeCreateRollback: a create that fails at any step leaves no
// record, bundle, log file or runtime state, and the id can be reused.
func TestFakeCreateRollback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(f *fakeEnv, o *CreateOptions)
		want  error    // the sentinel, nil for any error
		calls []string // the fake's calls, in order
	}{
		{name: "log path leaves the pod's log directory", setup: func(f *fakeEnv, o *CreateOptions) {
			outside := filepath.Join(f.logDir, "outside")
			os.Mkdir(outside, 0o700)
			os.Symlink(outside, filepath.Join(f.logDir, "pod", "c1"))
			o.LogDirectory, o.LogPath = filepath.Join(f.logDir, "pod"), filepath.Join(f.logDir, "pod", "c1", "0.log")
		}, want: errdefs.ErrInvalidArgument},
		{name: "unknown handler", setup: func(f *fakeEnv, o *CreateOptions) { o.Handler = "kata" }, want: errdefs.ErrNotFound},
		{name: "bad stop signal", setup: func(f *fakeEnv, o *CreateOptions) { o.StopSignal = "SIGNOPE" }, want: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEnv(t)
			os.MkdirAll(filepath.Join(f.logDir, "pod"), 0o700)
			o := f.options("c1")
			tc.setup(f, &o)
			_, err := f.m.Create(context.Background(), o)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("create: %v, want an error wrapping %v", err, tc.want)
			}
			if !called(f.rt, tc.calls...) {
				t.Errorf("runtime calls %v, want %v in order", f.rt.Calls(), tc.calls)
			}
			if _, err := f.m.Get("c1"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("a record is left: %v", err)
			}
			if _, err := os.Stat(f.m.files("c1").bundle); !os.IsNotExist(err) {
				t.Errorf("the bundle is left: %v", err)
			}
			if _, err := os.Lstat(o.LogPath); err == nil && !strings.Contains(tc.name, "leaves") {
				t.Errorf("the log file %s is left", o.LogPath)
			}
			delete(f.rt.Fail, "create")
			f.create(t, "c1") // the id is free again
		})
	}
}

// TestFakeStart: only a created container starts; a failed start leaves
// the container exited with the reason, not created forever.
func TestFakeStart(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, f *fakeEnv)
		want   error
		state  State
		reason string
		killed bool
	}{
		{name: "created", setup: func(t *testing.T, f *fakeEnv) { f.create(t, "c1") }, state: StateRunning},
		{name: "running", setup: func(t *testing.T, f *fakeEnv) { f.running(t, "c1") },
			want: errdefs.ErrFailedPrecondition, state: StateRunning},
		{name: "stopped", setup: func(t *testing.T, f *fakeEnv) {
			f.running(t, "c1")
			if err := f.m.Stop(ctx, "c1", 0); err != nil {
				t.Fatal(err)
			}
		}, want: errdefs.ErrFailedPrecondition, state: StateExited, reason: ReasonError},
		{name: "runtime start fails", setup: func(t *testing.T, f *fakeEnv) {
			f.create(t, "c1")
			f.rt.Fail["start"] = errors.New("exec: \"nope\": executable file not found")
		}, state: StateExited, reason: ReasonStartError, killed: true},
		{name: "unknown", setup: func(t *testing.T, f *fakeEnv) {}, want: errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEnv(t)
			tc.setup(t, f)
			err := f.m.Start(ctx, "c1")
			if tc.want != nil && !errors.Is(err, tc.want) || tc.want == nil && tc.reason == "" && err != nil {
				t.Fatalf("start: %v, want %v", err, tc.want)
			}
			if tc.state == "" {
				return
			}
			c := f.state(t, "c1", tc.state)
			if c.Reason != tc.reason {
				t.Errorf("reason %q, want %q", c.Reason, tc.reason)
			}
			if tc.killed && !called(f.rt, "start c1", "kill c1 9") {
				t.Errorf("a failed start was not killed: %v", f.rt.Calls())
			}
		})
	}
}

// TestFakeStop: the stop signal, the escalation to SIGKILL, the exit code
// conmon would record, and removal deleting the runtime's state.
func TestFakeStop(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		signal  string
		ignore  []unix.Signal
		timeout time.Duration
		calls   []string
		code    int32
	}{
		{name: "SIGTERM", timeout: 5 * time.Second, calls: []string{"kill c1 15"}, code: 143},
		{name: "image stop signal", signal: "SIGINT", timeout: 5 * time.Second, calls: []string{"kill c1 2"}, code: 130},
		{name: "ignored: escalates", ignore: []unix.Signal{unix.SIGTERM}, timeout: 200 * time.Millisecond,
			calls: []string{"kill c1 15", "kill c1 9"}, code: 137},
		{name: "timeout 0 kills at once", timeout: 0, calls: []string{"kill c1 9"}, code: 137},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEnv(t)
			o := f.options("c1")
			o.StopSignal = tc.signal
			if _, err := f.m.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
			if err := f.m.Start(ctx, "c1"); err != nil {
				t.Fatal(err)
			}
			f.rt.IgnoreSignals = tc.ignore
			if err := f.m.Stop(ctx, "c1", tc.timeout); err != nil {
				t.Fatal(err)
			}
			c := f.state(t, "c1", StateExited)
			if c.ExitCode != tc.code || !called(f.rt, tc.calls...) {
				t.Errorf("exit code %d, calls %v; want %d, %v", c.ExitCode, f.rt.Calls(), tc.code, tc.calls)
			}
			if err := f.m.Remove(ctx, "c1"); err != nil {
				t.Fatal(err)
			}
			if f.rt.Status("c1") != "" || !called(f.rt, "delete c1") {
				t.Errorf("remove left the runtime's state: calls %v", f.rt.Calls())
			}
			if _, err := f.m.Get("c1"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("record left after remove: %v", err)
			}
		})
	}
}

// TestFakeExitedByItself: an exit the monitor records shows as exited
// with its code and reason, through the exit watcher.
func TestFakeExitedByItself(t *testing.T) {
	f := newFakeEnv(t)
	f.running(t, "c1")
	if err := f.rt.Exit("c1", 3); err != nil {
		t.Fatal(err)
	}
	c := f.state(t, "c1", StateExited)
	if c.ExitCode != 3 || c.Reason != ReasonError {
		t.Errorf("exit %d reason %q, want 3 %q", c.ExitCode, c.Reason, ReasonError)
	}
}

// TestFakeExecSync: ExecSync is Exec into capped buffers: the exit code,
// the output, the timeout (which kills), and the target checks.
func TestFakeExecSync(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		target   string // "running", "created", "exits" (the container exits under the command)
		cmd      []string
		timeout  time.Duration
		exec     func(ctx context.Context, r oci.ExecRequest) (oci.ExecExit, error)
		want     error
		code     int32
		stdout   string
		timedOut bool
	}{
		{name: "exit code and output", target: "running", cmd: []string{"sh"},
			exec: func(ctx context.Context, r oci.ExecRequest) (oci.ExecExit, error) {
				io.WriteString(r.Stdout, "out")
				io.WriteString(r.Stderr, "err")
				return oci.ExecExit{Code: 5}, nil
			}, code: 5, stdout: "out"},
		{name: "timeout kills", target: "running", cmd: []string{"sleep", "100"}, timeout: 100 * time.Millisecond,
			exec: func(ctx context.Context, r oci.ExecRequest) (oci.ExecExit, error) {
				io.WriteString(r.Stdout, "started")
				<-ctx.Done() // the runtime kills the tree when ctx ends
				return oci.ExecExit{Code: 137, Killed: true}, ctx.Err()
			}, code: execTimedOutCode, stdout: "started", timedOut: true},
		{name: "output capped", target: "running", cmd: []string{"yes"},
			exec: func(ctx context.Context, r oci.ExecRequest) (oci.ExecExit, error) {
				chunk := strings.Repeat("y", 1<<20)
				for range MaxExecOutput/len(chunk) + 3 {
					io.WriteString(r.Stdout, chunk)
				}
				return oci.ExecExit{}, nil
			}, stdout: strings.Repeat("y", MaxExecOutput)},
		{name: "runtime fails", target: "running", cmd: []string{"/nope"},
			exec: func(ctx context.Context, r oci.ExecRequest) (oci.ExecExit, error) {
				return oci.ExecExit{}, errors.New("runc exec: executable file not found")
			}},
		{name: "container exits during exec", target: "exits", cmd: []string{"sh"}, want: errdefs.ErrFailedPrecondition},
		{name: "created container", target: "created", cmd: []string{"true"}, want: errdefs.ErrFailedPrecondition},
		{name: "empty command", target: "running", want: errdefs.ErrInvalidArgument},
		{name: "unknown container", cmd: []string{"true"}, want: errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEnv(t)
			switch tc.target {
			case "running", "exits":
				f.running(t, "c1")
			case "created":
				f.create(t, "c1")
			}
			f.rt.ExecFunc = tc.exec
			if tc.target == "exits" {
				f.rt.ExecFunc = func(ctx context.Context, r oci.ExecRequest) (oci.ExecExit, error) {
					f.rt.Exit("c1", 137)
					return oci.ExecExit{}, errors.New("runc exec: container not running")
				}
			}
			res, err := f.m.ExecSync(ctx, "c1", tc.cmd, tc.timeout)
			if tc.exec != nil && tc.code == 0 && tc.stdout == "" { // a failing runtime
				if err == nil {
					t.Fatalf("exec succeeded: %+v", res)
				}
				return
			}
			if tc.want != nil || err != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("exec: %v, want %v", err, tc.want)
				}
				return
			}
			if res.ExitCode != tc.code || string(res.Stdout) != tc.stdout || res.TimedOut != tc.timedOut {
				t.Errorf("code %d stdout %.20q (%d bytes) timed out %t; want %d %.20q (%d) %t",
					res.ExitCode, res.Stdout, len(res.Stdout), res.TimedOut, tc.code, tc.stdout, len(tc.stdout), tc.timedOut)
			}
			if left, _ := filepath.Glob(filepath.Join(f.m.files("c1").bundle, "exec-*")); len(left) > 0 {
				t.Errorf("exec files left: %v", left)
			}
		})
	}
}

// TestFakeExecStream: Exec reports a non-zero exit as an *ExitError and a
// client that goes away as its context's error.
func TestFakeExecStream(t *testing.T) {
	f := newFakeEnv(t)
	f.running(t, "c1")
	f.rt.ExecFunc = func(ctx context.Context, r oci.ExecRequest) (oci.ExecExit, error) {
		if r.TTY {
			<-ctx.Done()
			return oci.ExecExit{Code: 137, Killed: true}, ctx.Err()
		}
		return oci.ExecExit{Code: 7}, nil
	}
	var exitErr *ExitError
	if err := f.m.Exec(context.Background(), "c1", []string{"false"}, Streams{}); !errors.As(err, &exitErr) || exitErr.Code != 7 {
		t.Errorf("exec: %v, want exit code 7", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := f.m.Exec(ctx, "c1", []string{"sh"}, Streams{TTY: true}); !errors.Is(err, context.Canceled) {
		t.Errorf("exec with the client gone: %v, want context.Canceled", err)
	}
}

// TestFakeUpdate: the limits reach the runtime and the record only for a
// live container with a cgroup.
func TestFakeUpdate(t *testing.T) {
	ctx := context.Background()
	f := newFakeEnv(t)
	f.running(t, "plain")
	o := f.options("confined")
	o.Spec.Linux.CgroupsPath = "/crib/pod1/confined"
	if _, err := f.m.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Start(ctx, "confined"); err != nil {
		t.Fatal(err)
	}
	limits := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512}
	if err := f.m.Update(ctx, "plain", limits); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("update without a cgroup: %v, want FailedPrecondition", err)
	}
	if err := f.m.Update(ctx, "confined", limits); err != nil {
		t.Fatal(err)
	}
	res := f.rt.Resources("confined")
	if res == nil || res.Memory == nil || *res.Memory.Limit != 64<<20 {
		t.Fatalf("the runtime got %+v", res)
	}
	if c, _ := f.m.Get("confined"); c.Config.GetLinux().GetResources().GetMemoryLimitInBytes() != 64<<20 {
		t.Errorf("the record keeps %v", c.Config.GetLinux().GetResources())
	}
	if called(f.rt, "update plain") {
		t.Errorf("the runtime was asked to update a container without a cgroup: %v", f.rt.Calls())
	}
}

// TestFakeHandlers: the handler a container is created with (the pod's
// runtime handler) drives every later operation on it; "" is the
// default; an unknown one is NotFound.
func TestFakeHandlers(t *testing.T) {
	ctx := context.Background()
	fakes := map[string]*ocifake.Runtime{}
	m, err := New(Options{
		Root: t.TempDir(), RunRoot: t.TempDir(),
		Handlers:       []Handler{{Name: "runc", Path: "/nonexistent/runc"}, {Name: "crun", Path: "/nonexistent/crun"}},
		DefaultHandler: "crun",
		Host:           &HostInfo{}, Reaper: testReaper,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewRuntime: func(c oci.Config) (oci.Runtime, error) {
			fakes[c.Name] = ocifake.New(c)
			return fakes[c.Name], nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	f := &fakeEnv{m: m, logDir: t.TempDir()}
	for _, tc := range []struct{ id, handler, want string }{
		{"on-runc", "runc", "runc"},
		{"on-crun", "crun", "crun"},
		{"on-default", "", "crun"},
	} {
		o := f.options(tc.id)
		o.Handler = tc.handler
		if _, err := m.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx, tc.id); err != nil {
			t.Fatal(err)
		}
		if err := m.Stop(ctx, tc.id, 0); err != nil {
			t.Fatal(err)
		}
		if err := m.Remove(ctx, tc.id); err != nil {
			t.Fatal(err)
		}
		for name, rt := range fakes {
			ran := called(rt, "create "+tc.id, "start "+tc.id, "kill "+tc.id+" 9", "delete "+tc.id)
			if ran != (name == tc.want) {
				t.Errorf("%s (handler %q): %s's calls %v", tc.id, tc.handler, name, rt.Calls())
			}
		}
	}
	o := f.options("on-kata")
	o.Handler = "kata"
	if _, err := m.Create(ctx, o); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("create with an unknown handler: %v, want NotFound", err)
	}
}

// TestFakeCreateRunsNoRuntime: CreateContainer's work ends at the record;
// the runtime and the monitor run only at Start.
func TestFakeCreateRunsNoRuntime(t *testing.T) {
	f := newFakeEnv(t)
	f.create(t, "c1")
	if calls := f.rt.Calls(); len(calls) != 0 {
		t.Errorf("create called the runtime: %v", calls)
	}
	c := f.state(t, "c1", StateCreated)
	if c.Pid != 0 || c.MonitorPid != 0 {
		t.Errorf("a created container has pid %d, monitor %d", c.Pid, c.MonitorPid)
	}
	if err := f.m.Start(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	if !called(f.rt, "create c1", "start c1") {
		t.Errorf("runtime calls %v, want create then start", f.rt.Calls())
	}
}

// TestFakeUnstartedLifecycle: a container never started has no process:
// stop leaves it created and touches no runtime, an update lands in its
// spec for Start, and remove deletes its bundle and record.
func TestFakeUnstartedLifecycle(t *testing.T) {
	ctx := context.Background()
	f := newFakeEnv(t)
	o := f.options("c1")
	o.Spec.Linux.CgroupsPath = "/crib/pod1/c1"
	if _, err := f.m.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Stop(ctx, "c1", 0); err != nil {
		t.Fatal(err)
	}
	f.state(t, "c1", StateCreated)
	limits := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}
	if err := f.m.Update(ctx, "c1", limits); err != nil {
		t.Fatal(err)
	}
	s, err := readSpec(f.m.files("c1").bundle)
	if err != nil || s.Linux.Resources == nil || s.Linux.Resources.Memory == nil || *s.Linux.Resources.Memory.Limit != 64<<20 {
		t.Errorf("the bundle's spec keeps %+v (%v), want the new memory limit", s, err)
	}
	if calls := f.rt.Calls(); len(calls) != 0 {
		t.Errorf("stop and update of a container never started called the runtime: %v", calls)
	}
	if err := f.m.Remove(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.m.files("c1").bundle); !os.IsNotExist(err) {
		t.Errorf("the bundle is left: %v", err)
	}
	if _, err := f.m.Get("c1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("the record is left: %v", err)
	}
}

// TestFakeLaunchFails: a runtime create that fails at Start returns the
// error, leaves the container exited with StartError, and its runtime
// state deleted.
func TestFakeLaunchFails(t *testing.T) {
	f := newFakeEnv(t)
	f.create(t, "c1")
	f.rt.Fail["create"] = errors.New("crun create failed: exec format error")
	if err := f.m.Start(context.Background(), "c1"); err == nil || !strings.Contains(err.Error(), "exec format error") {
		t.Fatalf("start: %v, want the runtime's error", err)
	}
	c := f.state(t, "c1", StateExited)
	if c.Reason != ReasonStartError || c.ExitCode != exitCodeUnknown || !strings.Contains(c.Message, "exec format error") || c.Pid != 0 {
		t.Errorf("after a failed launch: %s %d %q pid %d", c.Reason, c.ExitCode, c.Message, c.Pid)
	}
	if !called(f.rt, "create c1", "delete c1") || called(f.rt, "start c1") {
		t.Errorf("runtime calls %v, want create then delete, no start", f.rt.Calls())
	}
	if err := f.m.Start(context.Background(), "c1"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("second start: %v, want FailedPrecondition", err)
	}
}

// TestFakeLaunchChecksLogPath: a symlink planted in the pod's log
// directory between create and start is refused before the monitor
// would write through it.
func TestFakeLaunchChecksLogPath(t *testing.T) {
	f := newFakeEnv(t)
	o := f.options("c1")
	o.LogDirectory, o.LogPath = filepath.Join(f.logDir, "pod"), filepath.Join(f.logDir, "pod", "c1", "0.log")
	os.MkdirAll(o.LogDirectory, 0o700)
	if _, err := f.m.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(f.logDir, "outside")
	os.Mkdir(outside, 0o700)
	os.RemoveAll(filepath.Join(o.LogDirectory, "c1"))
	if err := os.Symlink(outside, filepath.Join(o.LogDirectory, "c1")); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Start(context.Background(), "c1"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("start through a planted symlink: %v, want InvalidArgument", err)
	}
	if called(f.rt, "create c1") {
		t.Errorf("the runtime was asked to create: %v", f.rt.Calls())
	}
	if c := f.state(t, "c1", StateExited); c.Reason != ReasonStartError {
		t.Errorf("reason %q, want StartError", c.Reason)
	}
}
