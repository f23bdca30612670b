//go:build integration

package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exeOf is the file a process runs.
func exeOf(t *testing.T, pid int) string {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// holdsFile reports whether one of pid's descriptors is open on a file
// named name.
func holdsFile(t *testing.T, pid int, name string) bool {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if filepath.Base(target) == name {
			return true
		}
	}
	return false
}

// `crib serve` prepares crib's namespaces, then executes the small
// host-side program beside it in the same process: the long-lived parent
// maps that program, not crib, and still holds the instance lock, which
// no process it starts inherits.
func TestIntegrationServeHostSideParent(t *testing.T) {
	u := lookupTestUser(t)
	hostside := filepath.Join(filepath.Dir(os.Getenv("CRIB_BIN")), "crib-hostside")
	if _, err := os.Stat(hostside); err != nil {
		t.Fatalf("make build puts crib-hostside beside crib: %v", err)
	}
	d := newDaemon(t, u)
	d.start(t)
	parent, child := d.cmd.Process.Pid, d.childPID(t)
	if got := exeOf(t, parent); got != hostside {
		t.Errorf("the parent runs %s, want %s\n%s", got, hostside, d.out)
	}
	if got, want := exeOf(t, child), os.Getenv("CRIB_BIN"); got != want {
		t.Errorf("the daemon runs %s, want %s", got, want)
	}
	if !holdsFile(t, parent, "crib.lock") {
		t.Errorf("the parent no longer holds crib.lock after the exec")
	}
	if holdsFile(t, child, "crib.lock") {
		t.Errorf("the daemon inherited crib.lock: it would keep the lock after the parent stopped")
	}
	out, err := u.command(d.args()...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already running") || !strings.Contains(string(out), fmt.Sprintf("pid %d", parent)) {
		t.Errorf("a second crib on the same roots: %v\n%s", err, out)
	}
	d.stop(t)
	if err := d.cmd.ProcessState; err == nil || !err.Success() {
		t.Errorf("crib did not stop cleanly: %v\n%s", err, d.out)
	}
}

// Without the host-side program beside it, crib runs the parent itself
// and says what is missing.
func TestIntegrationServeHostSideMissing(t *testing.T) {
	u := lookupTestUser(t)
	dir, err := os.MkdirTemp(u.home, "it-bin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	data, err := os.ReadFile(os.Getenv("CRIB_BIN"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "crib")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, u)
	d.bin = bin
	d.start(t)
	if got := exeOf(t, d.cmd.Process.Pid); got != bin {
		t.Errorf("the parent runs %s, want crib itself (%s)", got, bin)
	}
	if want := "crib-hostside is missing beside " + bin; !strings.Contains(d.out.String(), want) {
		t.Errorf("crib's log does not say %q:\n%s", want, d.out)
	}
}
