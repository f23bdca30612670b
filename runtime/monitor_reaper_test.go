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

func TestParseProcStat(t *testing.T) {
	line := "1234 (we(i) rd) S 42 1234 1234 0 -1 4194560 150 0 3 0 7 9 2 1 20 0 1 0 5555 1000000 321 18446744073709551615"
	st, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{state: 'S', ppid: 42, minflt: 150, majflt: 3, utime: 7, stime: 9, cutime: 2, cstime: 1, starttime: 5555, rssPages: 321, comm: "we(i) rd"}
	if st != want {
		t.Errorf("got %+v\nwant %+v", st, want)
	}
	if _, err := parseProcStat([]byte("1 (x) S 1")); err == nil {
		t.Error("a short line parsed")
	}
	if processState(os.Getpid()) == 0 {
		t.Error("own process has no state")
	}
}
