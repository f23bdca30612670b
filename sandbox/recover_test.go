package sandbox

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/procfs"
	"github.com/crib-dev/crib/runtime/cgroups"
)

// TestRecoverAfterRunRootLoss simulates a reboot: the pins are unmounted
// and the runroot is emptied while the records and leases remain.
func TestRecoverAfterRunRootLoss(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	opts.HostPorts = &recordingPorts{}
	m := newTestManager(t, opts)
	ctx := context.Background()
	lost := mustCreate(t, m, "lost", fullConfig("lost"))
	kept := mustCreate(t, m, "kept", podConfig("kept"))
	if n := len(leaseFiles(t, m)); n != 2 {
		t.Fatalf("%d leases, want 2", n)
	}

	// The reboot of pod "lost": namespaces, reaper and runtime state gone.
	if err := unmountUnder(m.runDir("lost")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(m.runDir("lost"))
	killProcess(lost.ReaperPID, lost.ReaperStartTime)
	// A create that crashed before its first record, holding a mount.
	orphan := filepath.Join(opts.RunRoot, "sandboxes", "orphan", "shm")
	os.MkdirAll(orphan, 0o755)
	if err := unix.Mount("shm", orphan, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	// A create that crashed after it pinned namespaces.
	crashed := mustCreate(t, m, "crashed", podConfig("crashed"))
	crashed.State = stateCreating
	if err := m.save(crashed); err != nil {
		t.Fatal(err)
	}

	// The restarted crib.
	m2, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m2.Recover(ctx)
	if err != nil {
		t.Fatalf("Recover: %v (%+v)", err, r)
	}
	if !slices.Equal(r.Ready, []string{"kept"}) || !slices.Equal(r.NotReady, []string{"lost"}) {
		t.Fatalf("report %+v", r)
	}
	got, err := m2.Get("lost")
	if err != nil || got.State != StateNotReady || got.IP != "" {
		t.Fatalf("lost pod after recovery: %+v, %v", got, err)
	}
	if k, _ := m2.Get("kept"); k == nil || k.State != StateReady || k.IP != kept.IP {
		t.Fatalf("kept pod after recovery: %+v", k)
	}
	if _, err := m2.Get("crashed"); err == nil {
		t.Error("the crashed create is still listed")
	}
	leases := leaseFiles(t, m2)
	if len(leases) != 1 || filepath.Base(leases[0]) != kept.IP {
		t.Errorf("leases after recovery: %v (kept pod has %s)", leases, kept.IP)
	}
	// NAT rules are not checked: a real reboot flushes them, and the
	// bridge plugin (1.1.1) can only find its masquerade rules through the
	// pod's interface, which went with the namespace.
	if ms := mountsBelow(t, filepath.Join(opts.RunRoot, "sandboxes", "orphan")); len(ms) > 0 {
		t.Errorf("orphan mounts remain: %v", ms)
	}
	if _, err := os.Stat(filepath.Join(opts.RunRoot, "sandboxes", "orphan")); !os.IsNotExist(err) {
		t.Errorf("orphan run dir remains: %v", err)
	}
	for _, id := range []string{"lost", "kept"} {
		if err := m2.Remove(ctx, id); err != nil {
			t.Fatalf("remove %s after recovery: %v", id, err)
		}
	}
	if fs := filesBelow(t, filepath.Join(opts.RunRoot, "sandboxes")); len(fs) > 0 {
		t.Errorf("files left: %v", fs)
	}
	// The first manager still lists pods the second removed.
	m.mu.Lock()
	m.sandboxes = map[string]*Sandbox{}
	m.mu.Unlock()
}

// dirCgroups is a cgroup manager over plain directories, enough to see
// which pod cgroups exist.
type dirCgroups struct {
	cgroups.Manager
	base string
}

func (c dirCgroups) Name() string { return "cgroupfs" }
func (c dirCgroups) CreatePod(id, parent string, _, _ *runtimeapi.LinuxContainerResources) (string, error) {
	path := filepath.Join(parent, "crib-pod-"+id)
	return path, os.MkdirAll(filepath.Join(c.base, path), 0o755)
}
func (c dirCgroups) RemovePod(path string) error {
	if path == "" {
		return nil
	}
	return os.Remove(filepath.Join(c.base, path))
}

// TestRecoverCgroupOfInterruptedCreate: crib killed after making the pod
// cgroup and before saving its path in the record.
func TestRecoverCgroupOfInterruptedCreate(t *testing.T) {
	opts := testOptions(t)
	opts.Cgroups = dirCgroups{base: t.TempDir()}
	m := newTestManager(t, opts)
	sb := &Sandbox{ID: "cut", Config: hostNetwork(podConfig("cut")), State: stateCreating}
	if err := os.MkdirAll(m.recordDir(sb.ID), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.save(sb); err != nil {
		t.Fatal(err)
	}
	if _, err := opts.Cgroups.CreatePod(sb.ID, "", nil, nil); err != nil {
		t.Fatal(err)
	}

	m2 := newTestManager(t, opts)
	r, err := m2.Recover(context.Background())
	if err != nil || !slices.Contains(r.Removed, "cut") {
		t.Fatalf("Recover: %+v, %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(opts.Cgroups.(dirCgroups).base, "crib-pod-cut")); !os.IsNotExist(err) {
		t.Errorf("the interrupted create's cgroup is left: %v", err)
	}
}

// A reaper whose pod record never learnt its pid is found by its mark and
// killed; another crib's reaper (another root) is left alone.
func TestRecoverKillsStrayReaper(t *testing.T) {
	mine, mineStart, err := startReaper("", reaperMark("stray-pod", "/my/root"))
	if err != nil {
		t.Fatal(err)
	}
	theirs, theirStart, err := startReaper("", reaperMark("stray-pod", "/other/root"))
	if err != nil {
		t.Fatal(err)
	}
	defer killProcess(theirs, theirStart)
	m := &Manager{opts: Options{Root: "/my/root"}, sandboxes: map[string]*Sandbox{}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var r RecoverReport
	m.killStrayReapers(&r)
	if len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	if procfs.AliveSince(mine, mineStart) {
		t.Error("the stray reaper of this crib survived recovery")
	}
	if !procfs.AliveSince(theirs, theirStart) {
		t.Error("another crib's reaper was killed")
	}
}
