package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/crib-dev/crib/internal/procfs"
)

// exitingListenerEnv makes the test binary, at init (on the main
// thread), a process that listens on the socket named by its value and
// then ends its main thread alone: its leader is a zombie while another
// thread, 1.5s later, ends the process. That is a killed daemon whose
// last thread is still being torn down.
const exitingListenerEnv = "CRIB_TEST_EXITING_LISTENER"

func init() {
	path := os.Getenv(exitingListenerEnv)
	if path == "" {
		return
	}
	runtime.LockOSThread()
	if _, err := net.Listen("unix", path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		time.Sleep(1500 * time.Millisecond)
		os.Exit(0)
	}()
	// SYS_EXIT ends the calling thread only; through Syscall (not
	// RawSyscall) the runtime hands the thread's P to another thread.
	syscall.Syscall(syscall.SYS_EXIT, 0, 0, 0)
}

func TestListenCRIWaitsForAnExitingListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crib.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), exitingListenerEnv+"="+path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := procfs.ReadStat(cmd.Process.Pid)
		c, derr := net.Dial("unix", path)
		if derr == nil {
			c.Close()
		}
		if err == nil && st.State == 'Z' && derr == nil {
			break // the leader exited, the listener still answers
		}
		if time.Now().After(deadline) {
			t.Fatalf("the helper never had a zombie leader and an answering socket (state %c, dial %v)", st.State, derr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	l, err := listenCRI(path, slog.Default())
	if err != nil {
		t.Fatalf("listenCRI while the old listener's process exits: %v", err)
	}
	defer l.Close()
	if _, err := net.Dial("unix", path); err != nil {
		t.Fatalf("the new listener does not answer: %v", err)
	}
}

func TestListenCRIRefusesALiveListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crib.sock")
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	start := time.Now()
	l, err := listenCRI(path, slog.Default())
	if err == nil {
		l.Close()
		t.Fatal("listenCRI took over a socket a live process serves")
	}
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("err = %v, want ErrAlreadyRunning", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("listenCRI waited %v for a live listener", d)
	}
}
