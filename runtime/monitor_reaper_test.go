package runtime

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReaperLeavesWaitedChildren: neither registered children nor plain
// exec.Cmd children lose their exit status to the reaper, even while it
// is busy reaping orphans.
func TestReaperLeavesWaitedChildren(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			// Orphans keep the reaper scanning meanwhile.
			_ = exec.Command("sh", "-c", "sleep 0.01 & exit 0").Run()
			cmd := exec.Command("sh", "-c", "exit "+strconv.Itoa(i%3))
			var err error
			if i%2 == 0 {
				err = testReaper.Run(cmd)
			} else {
				err = cmd.Run()
			}
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != i%3 {
				t.Errorf("child %d: %v (state %v)", i, err, cmd.ProcessState)
			}
		})
	}
	wg.Wait()
}

func TestReaperReapsOrphans(t *testing.T) {
	out, err := exec.Command("sh", "-c", "sleep 0.1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for processState(pid) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d is still there, state %c", pid, processState(pid))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestProcessState(t *testing.T) {
	if processState(os.Getpid()) == 0 {
		t.Error("own process has no state")
	}
}
