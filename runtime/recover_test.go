package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime/oci"
)

// TestRecover drops a Manager with containers in several states, as a
// crib restart or crash does, and checks what a new one makes of them.
func TestRecover(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	lost, left := crashScene(t, e)

	e.m.Close() // crib goes away; the monitors stay
	if err := syscall.Kill(lost.MonitorPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// rec-exits exits while nobody watches; wait for its monitor to record
	// that (a fixed sleep is too short on a loaded machine).
	exitFile := filepath.Join(e.opts.RunRoot, "exits", "rec-exits")
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(exitFile); err == nil {
			break
		}
	}

	e.m = e.newManager()
	rep, err := e.m.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recover: %+v", rep)
	slices.Sort(rep.Reattached)
	if !slices.Equal(rep.Reattached, []string{"rec-launched", "rec-running", "rec-started"}) || !slices.Equal(rep.Exited, []string{"rec-exits"}) ||
		!slices.Equal(rep.Unstarted, []string{"rec-created"}) ||
		!slices.Equal(rep.Lost, []string{"rec-lost"}) || !slices.Equal(sorted(rep.Cleaned), []string{"rec-gone", "rec-orphan", "rec-removed"}) {
		t.Errorf("report %+v", rep)
	}
	checkRecovered(t, e, lost)
	for _, p := range left {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("the leftover %s is left", p)
		}
	}
	for _, id := range []string{"rec-created", "rec-launched"} {
		if err := e.m.Start(ctx, id); err != nil {
			t.Errorf("start of %s, created before the restart: %v", id, err)
		}
		if c, _ := e.m.Get(id); c.State != StateRunning || !processAlive(c.Pid) {
			t.Errorf("%s after its start: %s pid %d", id, c.State, c.Pid)
		}
	}
	for _, id := range []string{"rec-running", "rec-lost", "rec-exits", "rec-created", "rec-started", "rec-launched"} {
		if err := e.m.Remove(ctx, id); err != nil {
			t.Errorf("remove %s: %v", id, err)
		}
		assertNoTraces(t, e, id)
	}
}

// crashScene makes what a crib crash leaves: containers running, created,
// exiting, one started by the runtime but recorded created, and the
// leftovers of half-made or half-removed containers (returned as paths).
func crashScene(t *testing.T, e *testEnv) (lost *Container, leftovers []string) {
	e.run("rec-running", "sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait")
	lost = e.run("rec-lost", "sleep", "1000")
	// A crash between the runtime's start and the record's update.
	rt := launchOnly(t, e, "rec-started")
	if err := rt.Start(context.Background(), "rec-started"); err != nil {
		t.Fatal(err)
	}
	// A crash between Start's launch (monitor and runtime create) and
	// the runtime's start.
	launchOnly(t, e, "rec-launched")
	e.run("rec-exits", "sleep", "0.5")
	e.create("rec-created", config("rec-created", "sleep", "1000"))
	// A crash in the middle of a create: a bundle and no record.
	orphan := filepath.Join(e.opts.RunRoot, "containers", "rec-orphan")
	// A removal killed after the record went and before its directory.
	emptyRecord := filepath.Join(e.opts.Root, "containers", "rec-removed")
	for _, d := range []string{orphan, emptyRecord} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// What a monitor of a container removed while crib was away left:
	// an attach link to a bundle that is gone.
	orphanLink := filepath.Join(e.opts.RunRoot, "attach", "rec-gone")
	if err := os.Symlink(filepath.Join(e.opts.RunRoot, "containers", "rec-gone"), orphanLink); err != nil {
		t.Fatal(err)
	}
	return lost, []string{orphan, emptyRecord, orphanLink, filepath.Join(e.opts.RunRoot, testHandler(), "rec-lost")}
}

// launchOnly creates a container and runs the first half of its Start,
// as a Start that crib died in does: the record on disk has no pids.
func launchOnly(t *testing.T, e *testEnv, id string) oci.Runtime {
	t.Helper()
	e.createLaunched(id, config(id, "sleep", "1000"))
	rt, err := e.m.runtimeFor("")
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// checkRecovered checks each container's state after Recover.
func checkRecovered(t *testing.T, e *testEnv, lost *Container) {
	t.Helper()
	c, _ := e.m.Get("rec-running")
	if c.State != StateRunning {
		t.Errorf("re-attached container is %s", c.State)
	}
	if c, _ = e.m.Get("rec-started"); c.State != StateRunning || c.StartedAt.IsZero() {
		t.Errorf("container started by the runtime before the crash is %s (started %v), want running", c.State, c.StartedAt)
	}
	if c, _ = e.m.Get("rec-created"); c.State != StateCreated || c.Pid != 0 {
		t.Errorf("created container is %s (pid %d) after recovery", c.State, c.Pid)
	}
	if c, _ = e.m.Get("rec-launched"); c.State != StateCreated || !processAlive(c.Pid) || c.MonitorPid == 0 {
		t.Errorf("container launched before the crash is %s (pid %d, monitor %d), want created with both pids", c.State, c.Pid, c.MonitorPid)
	}
	if err := e.m.Stop(context.Background(), "rec-running", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if c, _ = e.m.Get("rec-running"); c.State != StateExited || c.ExitCode != 0 {
		t.Errorf("re-attached container after stop: %s code %d", c.State, c.ExitCode)
	}
	c, _ = e.m.Get("rec-exits")
	if c.State != StateExited || c.ExitCode != 0 || c.Reason != ReasonCompleted {
		t.Errorf("container that exited while crib was away: %s %d %s", c.State, c.ExitCode, c.Reason)
	}
	c, _ = e.m.Get("rec-lost")
	if c.State != StateExited || c.ExitCode != exitCodeUnknown || c.Reason != ReasonHostRestarted || c.Message == "" {
		t.Errorf("container whose monitor died: %s %d %s %q", c.State, c.ExitCode, c.Reason, c.Message)
	}
	if processAlive(lost.Pid) {
		t.Errorf("the unmonitored container's process %d still runs", lost.Pid)
	}
}

// TestRecoverAfterReboot: the runroot is a tmpfs, so after a reboot the
// records remain and everything else is gone.
func TestRecoverAfterReboot(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	c := e.run("rec-reboot", "sleep", "1000")
	e.m.Close()
	// Simulate the reboot: kill the monitor and the container, empty the
	// runroot.
	_ = syscall.Kill(c.MonitorPid, syscall.SIGKILL)
	_ = syscall.Kill(c.Pid, syscall.SIGKILL)
	time.Sleep(200 * time.Millisecond)
	entries, _ := os.ReadDir(e.opts.RunRoot)
	for _, en := range entries {
		if err := os.RemoveAll(filepath.Join(e.opts.RunRoot, en.Name())); err != nil {
			t.Fatal(err)
		}
	}
	e.m = e.newManager()
	rep, err := e.m.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Lost, []string{"rec-reboot"}) {
		t.Errorf("report %+v", rep)
	}
	got, _ := e.m.Get("rec-reboot")
	if got.State != StateExited || got.Reason != ReasonHostRestarted || got.ExitCode != exitCodeUnknown {
		t.Errorf("after reboot: %s %s %d", got.State, got.Reason, got.ExitCode)
	}
	if err := e.m.Remove(ctx, "rec-reboot"); err != nil {
		t.Fatal(err)
	}
	assertNoTraces(t, e, "rec-reboot")
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestReleaseLeavesOnlyFiles: Release ends the container and forgets it,
// leaving the runtime's state and the bundle to its reclaim; a crash
// before the reclaim ran leaves them to the start-up sweep, which removes
// them; a reclaim that runs leaves nothing either.
func TestReleaseLeavesOnlyFiles(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	for _, id := range []string{"rel-crash", "rel-reclaim"} {
		e.run(id, "sleep", "1000")
	}
	reclaims := map[string]func(context.Context) error{}
	for _, id := range []string{"rel-crash", "rel-reclaim"} {
		pid := mustGet(t, e, id).Pid
		reclaim, err := e.m.Release(ctx, id)
		if err != nil || reclaim == nil {
			t.Fatalf("Release %s: %v (reclaim nil: %v)", id, err, reclaim == nil)
		}
		reclaims[id] = reclaim
		if processAlive(pid) {
			t.Errorf("%s's process %d outlived Release", id, pid)
		}
		if _, err := e.m.Get(id); !errdefs.IsNotFound(err) {
			t.Errorf("Get %s after Release: %v, want not found", id, err)
		}
		if _, err := os.Stat(e.m.files(id).bundle); err != nil {
			t.Errorf("the bundle of %s went before its reclaim: %v", id, err)
		}
		// The record file is what a restarted crib would find: it is gone
		// at once (its directory may wait for the reclaim).
		if _, err := os.Stat(e.m.store.path(id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the record of %s outlived Release: %v", id, err)
		}
	}
	if again, err := e.m.Release(ctx, "rel-crash"); err != nil || again != nil {
		t.Errorf("a second Release: %v (reclaim nil: %v), want nothing to do", err, again == nil)
	}
	if err := reclaims["rel-reclaim"](ctx); err != nil {
		t.Fatal(err)
	}
	assertNoTraces(t, e, "rel-reclaim")

	e.m.Close() // crib dies before rel-crash's reclaim
	e.m = e.newManager()
	rep, err := e.m.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.Cleaned, "rel-crash") {
		t.Errorf("the sweep cleaned %v, want rel-crash among them", rep.Cleaned)
	}
	assertNoTraces(t, e, "rel-crash")
}

func mustGet(t *testing.T, e *testEnv, id string) *Container {
	t.Helper()
	c, err := e.m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
