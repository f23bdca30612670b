package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWaitOnOwnThreadReleasesThreads: each waiting pod process holds a
// thread; once the processes are gone, so are the threads (a plain
// cmd.Wait leaves them idle in the runtime for good).
func TestWaitOnOwnThreadReleasesThreads(t *testing.T) {
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
		go func() { waitOnOwnThread(cmd); done <- struct{}{} }()
	}
	waitThreads(t, func(c int) bool { return c >= base+n }, "every wait to hold a thread")
	for _, cmd := range cmds {
		cmd.Process.Kill()
	}
	for range n {
		<-done
	}
	waitThreads(t, func(c int) bool { return c <= base+2 }, "the waits' threads to exit")
}

func waitThreads(t *testing.T, ok func(int) bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c := threadCount(t)
		if ok(c) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s: %d threads", what, c)
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
