package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReapPodProcessHoldsNoThread: a pod's waiting process holds no
// thread while it lives (the wait sleeps in the poller), and the waits
// end when the processes do. A plain cmd.Wait holds one thread per
// process, and the runtime keeps them all once idle.
func TestReapPodProcessHoldsNoThread(t *testing.T) {
	const n = 20
	base := threadCount(t)
	done := make(chan struct{}, n)
	var cmds []*exec.Cmd
	for range n {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		go func() { reapPodProcess(cmd); done <- struct{}{} }()
	}
	time.Sleep(200 * time.Millisecond) // the waits are all asleep
	if c := threadCount(t); c > base+3 {
		t.Errorf("%d waiting processes hold %d threads more than the %d before", n, c-base, base)
	}
	for _, cmd := range cmds {
		cmd.Process.Kill()
	}
	for range n {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a wait did not end with its process")
		}
	}
	for _, cmd := range cmds {
		if cmd.ProcessState == nil {
			t.Fatalf("pid %d was not reaped", cmd.Process.Pid)
		}
	}
}

func threadCount(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			c, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}
