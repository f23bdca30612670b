package pidfd

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestAwait: the wait for a process's exit returns when the process
// exits (a zombie not yet reaped counts: an adopted conmon is one until
// its reaper gets to it, a pod's process until cmd.Wait), when ctx ends,
// and at the deadline.
func TestAwait(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(cmd *exec.Cmd, cancel context.CancelFunc)
		long bool // the deadline is far: only the end may return the wait
	}{
		{name: "process exits", long: true, end: func(cmd *exec.Cmd, _ context.CancelFunc) { cmd.Process.Kill() }},
		{name: "ctx ends", long: true, end: func(_ *exec.Cmd, cancel context.CancelFunc) { cancel() }},
		{name: "deadline", end: func(*exec.Cmd, context.CancelFunc) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sleep", "1000")
			if err := cmd.Start(); err != nil {
				t.Skip(err)
			}
			defer cmd.Wait()
			defer cmd.Process.Kill()
			f, err := Open(cmd.Process.Pid)
			if err != nil {
				t.Skipf("no pidfds: %v", err)
			}
			defer f.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			deadline := time.Now().Add(50 * time.Millisecond)
			if tc.long {
				deadline = time.Now().Add(time.Hour)
			}
			done := make(chan struct{})
			go func() { _ = Await(ctx, f, deadline); close(done) }()
			tc.end(cmd, cancel)
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatal("the wait did not return")
			}
		})
	}
}
