package runtime

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestAttach attaches to a shell reading its stdin through the real
// conmon's attach socket: input reaches it, stdout and stderr come back
// apart, and closing stdin (stdin_once) ends the container and the attach.
func TestAttach(t *testing.T) {
	e := newEnv(t, false)
	cfg := config("attach", "sh")
	cfg.Stdin, cfg.StdinOnce = true, true
	e.create("attach", cfg)
	if err := e.m.Start(context.Background(), "attach"); err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- e.m.Attach(context.Background(), "attach", Streams{Stdin: inR, Stdout: &stdout, Stderr: &stderr})
	}()
	io.WriteString(inW, "echo hello; echo oops >&2\n")
	stdout.waitFor(t, "hello\n")
	stderr.waitFor(t, "oops\n")
	if strings.Contains(stdout.String(), "oops") || strings.Contains(stderr.String(), "hello") {
		t.Errorf("streams mixed: stdout %q stderr %q", stdout.String(), stderr.String())
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("attach: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("attach did not end after stdin closed")
	}
	e.waitState("attach", StateExited, 10*time.Second)
}

// TestAttachTTY resizes the container's own terminal through the monitor.
func TestAttachTTY(t *testing.T) {
	e := newEnv(t, false)
	e.addApplets("stty")
	cfg := config("attach-tty", "sh")
	cfg.Stdin, cfg.Tty = true, true
	e.create("attach-tty", cfg)
	if err := e.m.Start(context.Background(), "attach-tty"); err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	resize := make(chan TerminalSize)
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.m.Attach(ctx, "attach-tty", Streams{Stdin: inR, Stdout: &out, TTY: true, Resize: resize})
	}()
	resize <- TerminalSize{Width: 90, Height: 30}
	// The fifo is asynchronous: ask until the new size shows.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "30 90") {
		if time.Now().After(deadline) {
			t.Fatalf("size never applied: %q", out.String())
		}
		io.WriteString(inW, "stty size\n")
		time.Sleep(200 * time.Millisecond)
	}
	// A client leaving ends the attach and leaves the container running.
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("attach did not end when the client left")
	}
	if c, _ := e.m.Status("attach-tty"); c.State != StateRunning {
		t.Errorf("container is %s after the client left", c.State)
	}
}
