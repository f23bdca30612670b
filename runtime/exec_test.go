package runtime

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/procfs"
)

func TestExecSync(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	c := e.run("exec", "sleep", "1000")
	for _, tc := range []struct {
		name           string
		cmd            []string
		stdout, stderr string
		code           int32
	}{
		{"stdout", []string{"echo", "hello"}, "hello\n", "", 0},
		{"stderr and code", []string{"sh", "-c", "echo out; echo err >&2; exit 5"}, "out\n", "err\n", 5},
		{"identity and cwd", []string{"sh", "-c", "id -u; pwd"}, "0\n/\n", "", 0},
		{"missing binary", []string{"/no/such/binary"}, "", "", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.m.ExecSync(ctx, c.ID, tc.cmd, 10*time.Second)
			if tc.code == -1 { // runc reports a command it cannot start as an error
				if err == nil && res.ExitCode == 0 {
					t.Errorf("exec of a missing binary succeeded: %+v", res)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Stdout) != tc.stdout || string(res.Stderr) != tc.stderr || res.ExitCode != tc.code || res.TimedOut {
				t.Errorf("got stdout %q stderr %q code %d timedout %t; want %q %q %d",
					res.Stdout, res.Stderr, res.ExitCode, res.TimedOut, tc.stdout, tc.stderr, tc.code)
			}
		})
	}
}

// TestExecSyncTimeout: the command and every process it started are gone
// when ExecSync returns, and the reply says it timed out.
func TestExecSyncTimeout(t *testing.T) {
	e := newEnv(t, false)
	c := e.run("exec-timeout", "sleep", "1000")
	start := time.Now()
	res, err := e.m.ExecSync(context.Background(), c.ID, []string{"sh", "-c", "sleep 300 & sleep 301 & echo started; sleep 302"}, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !res.TimedOut || res.ExitCode != execTimedOutCode || took > 3*time.Second {
		t.Errorf("timed out %t code %d after %s", res.TimedOut, res.ExitCode, took)
	}
	if !strings.Contains(string(res.Stdout), "started") {
		t.Errorf("output before the timeout is lost: %q", res.Stdout)
	}
	// Only the container's init is left in its PID namespace, and no
	// zombie or runtime process hangs below the test (crib) process.
	deadline := time.Now().Add(3 * time.Second)
	for {
		pids := containerPids(c)
		left := leftovers()
		if len(pids) == 1 && len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left: container %v, below crib %v", pids, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leftovers lists crib's children that are zombies or sleeps of an exec.
func leftovers() []string {
	var out []string
	for _, pid := range childPids() {
		st, err := procfs.ReadStat(pid)
		if err != nil {
			continue
		}
		if st.State == 'Z' || st.Comm == "sleep" || st.Comm == "runc" || st.Comm == "runc:[2:INIT]" || st.Comm == "crun" {
			out = append(out, fmt.Sprintf("%d %s %c", pid, st.Comm, st.State))
		}
	}
	return out
}

func TestExecSyncOutputCap(t *testing.T) {
	e := newEnv(t, false)
	c := e.run("exec-cap", "sleep", "1000")
	res, err := e.m.ExecSync(context.Background(), c.ID, []string{"sh", "-c", "head -c 20000000 /dev/zero; head -c 17000000 /dev/zero >&2; echo done >&2"}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != MaxExecOutput || len(res.Stderr) != MaxExecOutput || res.ExitCode != 0 {
		t.Errorf("stdout %d bytes, stderr %d bytes, code %d; want %d each", len(res.Stdout), len(res.Stderr), res.ExitCode, MaxExecOutput)
	}
}

func TestExecSyncConcurrent(t *testing.T) {
	e := newEnv(t, false)
	c := e.run("exec-many", "sleep", "1000")
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprintf("exec %d", i)
			res, err := e.m.ExecSync(context.Background(), c.ID, []string{"echo", want}, 60*time.Second)
			switch {
			case err != nil:
				errs <- err
			case string(res.Stdout) != want+"\n" || res.ExitCode != 0:
				errs <- fmt.Errorf("exec %d: stdout %q code %d", i, res.Stdout, res.ExitCode)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestExecSyncPreconditions(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	e.run("exec-done", "true")
	e.waitState("exec-done", StateExited, 10*time.Second)
	if _, err := e.m.ExecSync(ctx, "exec-done", []string{"true"}, time.Second); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("exec in an exited container: %v", err)
	}
	e.create("exec-created", config("exec-created", "true"))
	if _, err := e.m.ExecSync(ctx, "exec-created", []string{"true"}, time.Second); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("exec in a created container: %v", err)
	}
	if _, err := e.m.ExecSync(ctx, "nope", []string{"true"}, time.Second); !errdefs.IsNotFound(err) {
		t.Errorf("exec in an unknown container: %v", err)
	}
}

// TestExecSyncLatency prints the mean ExecSync latency; it is a figure for
// the benchmark notes, not a timed assertion.
func TestExecSyncLatency(t *testing.T) {
	e := newEnv(t, false)
	c := e.run("exec-latency", "sleep", "1000")
	const n = 20
	start := time.Now()
	for range n {
		if _, err := e.m.ExecSync(context.Background(), c.ID, []string{"true"}, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("ExecSync mean latency over %d runs: %s", n, time.Since(start)/n)
}
