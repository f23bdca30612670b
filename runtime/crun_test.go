package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The container tests run with runc; TestCrun runs them again with the
// crun handler, in a child test process of its own mount namespace. On a
// hybrid cgroup host (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)
// crun 1.8 refuses every container unless that cgroup2 mount is hidden,
// so the child unmounts it there, as crib's own cgroup view does.

const handlerEnv = "CRIB_RUNTIME_TEST_HANDLER"

// testHandler is the OCI runtime the container tests use.
func testHandler() string {
	if h := os.Getenv(handlerEnv); h != "" {
		return h
	}
	return "runc"
}

const unifiedMount = "/sys/fs/cgroup/unified"

// hideUnifiedForCrun, in TestCrun's child (its own mount namespace),
// unmounts the hybrid host's cgroup2 mount after making every mount
// private, so nothing propagates back to the machine.
func hideUnifiedForCrun() error {
	if testHandler() != "crun" {
		return nil
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := unix.Unmount(unifiedMount, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

func TestCrun(t *testing.T) {
	if testHandler() == "crun" {
		t.Skip("already inside")
	}
	needRuntime(t)
	if _, err := exec.LookPath("crun"); err != nil {
		t.Skip("crun is not installed")
	}
	if testing.Short() {
		t.Skip("short")
	}
	// Not TestStats and TestUpdate: their cgroups are relative paths
	// (crib's v1 manager places pods below its own cgroup of each
	// controller), which runc resolves against its own cgroup of each
	// controller and crun 1.8 against each hierarchy's root. Where crib's
	// cgroup differs from the root (the memory controller on the
	// project's machines) crun's container lands elsewhere.
	run := "^(TestLifecycle|TestExitCodeAndReason|TestStopSignalAndTimeout|TestStopEndsEveryProcess|TestCensusEndsTheNamespace|TestCreateRollback|TestExecSync.*|TestExecStream.*|TestAttach.*|TestLogs.*|TestStatsExited|TestUpdateWithoutCgroup|TestOOMKilled|TestRecover.*)$"
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run", run, "-test.v", "-test.timeout", "10m")
	cmd.Dir, _ = os.Getwd()
	cmd.Env = append(os.Environ(), handlerEnv+"=crun")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	removeRootCgroups(t, cmd.Process.Pid)
	t.Logf("crun run:\n%s", out)
	if err != nil {
		t.Fatalf("the tests failed with crun: %v", err)
	}
	if strings.Contains(string(out), "--- SKIP: TestLifecycle") || !strings.Contains(string(out), "--- PASS: TestLifecycle") {
		t.Error("the crun lifecycle test did not run")
	}
}

// removeRootCgroups removes the test cgroups crun made below hierarchy
// roots instead of below the test's own cgroup (see TestCrun).
func removeRootCgroups(t *testing.T, pid int) {
	dirs, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/crib-rt-test-%d-*", pid))
	for _, d := range dirs {
		removeCgroupTree(t, d)
	}
}
