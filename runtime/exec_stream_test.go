package runtime

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
)

// syncBuffer collects a stream's output for a test to wait on.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q: %q", s, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// addApplets links more busybox applets into the test rootfs.
func (e *testEnv) addApplets(names ...string) {
	bb, _ := exec.LookPath("busybox")
	for _, n := range names {
		if err := os.Symlink(bb, filepath.Join(e.rootfs, "bin", n)); err != nil && !os.IsExist(err) {
			e.t.Fatal(err)
		}
	}
}

func TestExecStreamPipes(t *testing.T) {
	e := newEnv(t, false)
	c := e.run("stream-pipes", "sleep", "1000")
	for _, tc := range []struct {
		name           string
		cmd            []string
		stdin          string
		stdout, stderr string
		code           int
	}{
		{"stdin to stdout until stdin closes", []string{"cat"}, "line one\nline two\n", "line one\nline two\n", "", 0},
		{"stderr apart and exit code", []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, "", "out\n", "err\n", 3},
		{"no terminal", []string{"sh", "-c", "test -t 0 || echo no tty"}, "", "no tty\n", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			err := e.m.Exec(context.Background(), c.ID, tc.cmd, Streams{
				Stdin: strings.NewReader(tc.stdin), Stdout: &stdout, Stderr: &stderr,
			})
			checkExit(t, err, tc.code)
			if stdout.String() != tc.stdout || stderr.String() != tc.stderr {
				t.Errorf("stdout %q stderr %q; want %q %q", stdout.String(), stderr.String(), tc.stdout, tc.stderr)
			}
		})
	}
}

func checkExit(t *testing.T, err error, code int) {
	t.Helper()
	var exitErr *ExitError
	switch {
	case code == 0 && err != nil:
		t.Fatalf("exec failed: %v", err)
	case code != 0 && (!errors.As(err, &exitErr) || exitErr.ExitStatus() != code || !exitErr.Exited()):
		t.Fatalf("exec: %v, want exit code %d", err, code)
	}
}

// TestExecStreamTTY drives an interactive shell on a terminal: the size the
// client sets is the one the shell sees, and the shell's exit code comes
// back.
func TestExecStreamTTY(t *testing.T) {
	e := newEnv(t, false)
	e.addApplets("stty")
	c := e.run("stream-tty", "sleep", "1000")
	inR, inW := io.Pipe()
	resize := make(chan TerminalSize)
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- e.m.Exec(context.Background(), c.ID, []string{"sh"}, Streams{Stdin: inR, Stdout: &out, TTY: true, Resize: resize})
	}()
	select {
	case resize <- TerminalSize{Width: 101, Height: 41}:
	case err := <-done:
		t.Fatalf("exec ended early: %v", err)
	}
	io.WriteString(inW, "test -t 0 && echo is-a-tty; stty size\n")
	out.waitFor(t, "41 101")
	out.waitFor(t, "is-a-tty")
	select {
	case resize <- TerminalSize{Width: 77, Height: 22}:
	case err := <-done:
		t.Fatalf("exec ended early: %v", err)
	}
	io.WriteString(inW, "stty size; exit 7\n")
	out.waitFor(t, "22 77")
	select {
	case err := <-done:
		checkExit(t, err, 7)
	case <-time.After(10 * time.Second):
		t.Fatal("exec did not end after the shell exited")
	}
}

// TestExecStreamTTYStdinClose: closing stdin ends a shell reading the
// terminal (a ^D).
func TestExecStreamTTYStdinClose(t *testing.T) {
	e := newEnv(t, false)
	c := e.run("stream-tty-eof", "sleep", "1000")
	var out syncBuffer
	err := e.m.Exec(context.Background(), c.ID, []string{"sh", "-c", "cat; echo after-eof"}, Streams{
		Stdin: strings.NewReader("typed\n"), Stdout: &out, TTY: true,
	})
	checkExit(t, err, 0)
	if !strings.Contains(out.String(), "typed") || !strings.Contains(out.String(), "after-eof") {
		t.Errorf("output %q", out.String())
	}
}

// TestExecStreamClientGone: a client that goes away leaves no process of
// the exec behind, with or without a terminal.
func TestExecStreamClientGone(t *testing.T) {
	e := newEnv(t, false)
	c := e.run("stream-gone", "sleep", "1000")
	for _, tty := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		var out syncBuffer
		inR, _ := io.Pipe() // the client never closes its stdin
		done := make(chan error, 1)
		go func() {
			done <- e.m.Exec(ctx, c.ID, []string{"sh", "-c", "sleep 300 & echo started; sleep 301"}, Streams{Stdin: inR, Stdout: &out, TTY: tty})
		}()
		out.waitFor(t, "started")
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("tty %t: exec returned %v", tty, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("tty %t: exec did not return after the client left", tty)
		}
		waitOnlyInit(t, c)
	}
}

func waitOnlyInit(t *testing.T, c *Container) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		pids, left := containerPids(c), leftovers()
		if len(pids) == 1 && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left: container %v, below crib %v", pids, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExecStreamPreconditions(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	e.run("stream-done", "true")
	e.waitState("stream-done", StateExited, 10*time.Second)
	for _, tc := range []struct {
		id   string
		want func(error) bool
	}{
		{"stream-done", errdefs.IsFailedPrecondition},
		{"nope", errdefs.IsNotFound},
	} {
		if err := e.m.Exec(ctx, tc.id, []string{"true"}, Streams{}); !tc.want(err) {
			t.Errorf("exec in %s: %v", tc.id, err)
		}
		if err := e.m.Attach(ctx, tc.id, Streams{}); !tc.want(err) {
			t.Errorf("attach to %s: %v", tc.id, err)
		}
	}
}
