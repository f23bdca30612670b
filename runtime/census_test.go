package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/procfs"
)

// inMountNamespace starts sh -c script in a new mount namespace (inside a
// new user namespace, so that any user may) and returns it with the
// namespace's identity once the script said "ready".
func inMountNamespace(t *testing.T, script string) (*exec.Cmd, procfs.FileID) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot make a mount namespace here: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 6)
	if n, err := out.Read(buf); err != nil || string(buf[:n]) != "ready\n" {
		t.Fatalf("script said %q, %v", buf[:n], err)
	}
	ns := pinMountNamespace(t, cmd.Process.Pid)
	t.Cleanup(func() { // before the shell's: what it forked too
		for _, pid := range inNamespace(ns) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return cmd, ns
}

// pinMountNamespace returns the identity of pid's mount namespace and
// keeps the namespace open until the test ends, so that its number names
// no other namespace (another test's, on a shared machine) meanwhile.
func pinMountNamespace(t *testing.T, pid int) procfs.FileID {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	ns, err := procfs.Namespace(pid, "mnt")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// inNamespace lists the live processes in the mount namespace ns.
func inNamespace(ns procfs.FileID) []int {
	var pids []int
	for _, pid := range allPids() {
		if got, err := procfs.Namespace(pid, "mnt"); err == nil && got == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestCensusEndsTheNamespace: the census ends a shell and the daemon it
// double-forked, spares a sibling with the same root in another mount
// namespace, and trusts no namespace whose processes lack the root.
func TestCensusEndsTheNamespace(t *testing.T) {
	// The inner sh forks a sleep and exits: the sleep is an orphan.
	script := `sh -c 'sleep 1000 &'; sleep 1000 & echo ready; wait`
	victim, ns := inMountNamespace(t, script)
	sibling, siblingNS := inMountNamespace(t, script)
	root, err := procfs.RootDir(victim.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(inNamespace(ns)); n < 3 {
		t.Fatalf("%d processes in the victim's namespace, want the shell and two sleeps", n)
	}

	id, err := procfs.MountNamespaceID(victim.Process.Pid)
	if err != nil {
		t.Logf("no mount namespace ids: %v", err)
	}
	for _, stale := range []censusKey{
		// No id (an older kernel): a key whose root no process has.
		{MountNS: ns, Root: procfs.FileID{Dev: root.Dev, Ino: root.Ino + 1}},
		// An id that is not the namespace's: its number was reused.
		{MountNS: ns, MountNSID: id + 1000, Root: root},
	} {
		if pids, err := stale.members(); err != nil || len(pids) != 0 {
			t.Errorf("stale key %+v found members %v (%v)", stale, pids, err)
		}
		if err := stale.endAll(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
	}

	k := censusKey{MountNS: ns, MountNSID: id, Root: root}
	if err := k.endAll(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if left := inNamespace(ns); len(left) != 0 {
		t.Errorf("processes %v are left in the namespace after the census", left)
	}
	if n := len(inNamespace(siblingNS)); n < 3 {
		t.Errorf("the sibling's namespace (same root) has %d processes left, want its 3", n)
	}
	_ = sibling.Process.Kill()
	_ = sibling.Wait()
	_ = (censusKey{MountNS: siblingNS, Root: root}).endAll(context.Background(), 5*time.Second)
}

// TestCensusNeverRecordsCribsNamespace: a process in crib's own mount
// namespace gets no census, which would end crib's processes.
func TestCensusNeverRecordsCribsNamespace(t *testing.T) {
	cmd, _ := inMountNamespace(t, "echo ready; sleep 1000")
	for _, tc := range []struct {
		name string
		pid  int
		want bool
	}{
		{name: "crib's own namespace", pid: os.Getpid()},
		{name: "a namespace of its own", pid: cmd.Process.Pid, want: true},
	} {
		dir := t.TempDir()
		if err := recordCensus(dir, tc.pid); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := readCensus(dir); ok != tc.want || err != nil {
			t.Errorf("%s: census recorded %v (%v), want %v", tc.name, ok, err, tc.want)
		}
	}
}

// TestStopEndsEveryProcess: a container in the node's PID namespace whose
// init forks a daemon leaves nothing after Stop, whether the init still
// runs or already exited, with a cgroup and without one (where `runc kill`
// reaches the init only).
func TestStopEndsEveryProcess(t *testing.T) {
	const daemon = `sh -c 'sleep 1001 &'`
	for _, tc := range []struct {
		name    string
		cgroups bool
		script  string
		exited  bool // the init exits by itself before Stop
	}{
		{name: "running, no cgroup", script: daemon + `; sleep 1002 & echo ready; wait`},
		{name: "init exited, no cgroup", script: daemon + `; echo ready`, exited: true},
		{name: "running, cgroup", cgroups: true, script: daemon + `; sleep 1002 & echo ready; wait`},
		{name: "init exited, cgroup", cgroups: true, script: daemon + `; echo ready`, exited: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cgroups)
			ctx := context.Background()
			id := strings.NewReplacer(" ", "-", ",", "").Replace(tc.name)
			cfg := config(id, "sh", "-c", tc.script)
			cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
			c := e.createLaunched(id, cfg)
			ns := pinMountNamespace(t, c.Pid)
			if err := e.m.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
			e.waitLog(c, "ready")
			if tc.exited {
				e.waitState(id, StateExited, 10*time.Second)
			}
			if n := len(inNamespace(ns)); n == 0 {
				t.Fatal("no process of the container runs before Stop")
			}
			if err := e.m.Stop(ctx, id, 0); err != nil {
				t.Fatal(err)
			}
			if left := inNamespace(ns); len(left) != 0 {
				t.Errorf("processes %v of the container are left after Stop", left)
			}
			if err := e.m.Remove(ctx, id); err != nil {
				t.Fatal(err)
			}
			assertNoTraces(t, e, id)
		})
	}
}

// TestRecoverEndsLeftoverProcesses: recovery applies the census to a
// container whose monitor is gone and to one whose record is gone (a
// create or a removal cut short): in the node's PID namespace and without
// a cgroup, the runtime alone would end only their inits.
func TestRecoverEndsLeftoverProcesses(t *testing.T) {
	const script = `sh -c 'sleep 1003 &'; sleep 1004 & echo ready; wait`
	for _, tc := range []struct {
		name  string
		crash func(e *testEnv, c *Container)
	}{
		{name: "monitor killed", crash: func(e *testEnv, c *Container) {
			if err := syscall.Kill(c.MonitorPid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); e.isMonitor(c.MonitorPid, c.ID); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the killed monitor does not die")
				}
			}
		}},
		{name: "record gone", crash: func(e *testEnv, c *Container) {
			if err := os.Remove(e.m.store.path(c.ID)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, false)
			id := strings.ReplaceAll(tc.name, " ", "-")
			cfg := config(id, "sh", "-c", script)
			cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
			c := e.createLaunched(id, cfg)
			ns := pinMountNamespace(t, c.Pid)
			t.Cleanup(func() { // what a failed recovery left
				for _, pid := range inNamespace(ns) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			if err := e.m.Start(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			e.waitLog(c, "ready")
			if n := len(inNamespace(ns)); n < 3 {
				t.Fatalf("%d processes in the container, want the shell and two sleeps", n)
			}
			e.m.Close()
			tc.crash(e, c)
			e.m = e.newManager()
			rep, err := e.m.Recover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("recover: %+v", rep)
			if left := inNamespace(ns); len(left) != 0 {
				t.Errorf("processes %v of the container are left after recovery", left)
			}
		})
	}
}

// TestReadCensusTable: the census key written without a sync reads back;
// an empty file (what a power loss leaves of an unsynced write, when no
// process of the container can be left) is no census, not an error that
// would block the container's removal; garbage is still an error.
func TestReadCensusTable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content *string
		ok      bool
		fails   bool
	}{
		{name: "missing"},
		{name: "empty", content: ptr("")},
		{name: "key", content: ptr(`{"mount_ns":{"dev":1,"ino":2},"root":{"dev":3,"ino":4}}`), ok: true},
		{name: "garbage", content: ptr("{"), fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle := t.TempDir()
			if tc.content != nil {
				if err := os.WriteFile(bundle+"/"+censusFile, []byte(*tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, ok, err := readCensus(bundle)
			if ok != tc.ok || (err != nil) != tc.fails {
				t.Fatalf("ok %v, err %v; want ok %v, failure %v", ok, err, tc.ok, tc.fails)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
