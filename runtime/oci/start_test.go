package oci

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// recordingRunner runs nothing: it records each command line and fails it.
type recordingRunner struct {
	mu   sync.Mutex
	cmds []string
}

func (r *recordingRunner) record(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds = append(r.cmds, strings.Join(cmd.Args, " "))
	return errors.New("not run")
}
func (r *recordingRunner) Start(cmd *exec.Cmd) error { return r.record(cmd) }
func (r *recordingRunner) Wait(*exec.Cmd) error      { return nil }
func (r *recordingRunner) Run(cmd *exec.Cmd) error   { return r.record(cmd) }
func (r *recordingRunner) Kick()                     {}
func (r *recordingRunner) WaitAdopted(int) (unix.WaitStatus, error) {
	return 0, errors.New("not run")
}

// TestStartThroughFifo: crun's start is its exec-fifo handshake, done by
// crib where crun would do nothing more (no poststart hook); every other
// case runs the runtime's start. The state directory is what crun 1.8's
// create leaves: ROOT/ID/config.json and exec.fifo, whose read end the
// waiting init holds.
func TestStartThroughFifo(t *testing.T) {
	const noHooks = `{"ociVersion":"1.1.0","process":{"args":["sh"]}}`
	const prestartOnly = `{"hooks":{"prestart":[{"path":"/bin/true"}]}}`
	const poststart = `{"hooks":{"poststart":[{"path":"/bin/true"}]}}`
	for _, tc := range []struct {
		name, runtime, config string
		noFifo, noReader      bool
		wantExec              bool // the runtime's start ran
	}{
		{name: "crun plain", runtime: "crun", config: noHooks},
		{name: "crun other hooks", runtime: "crun", config: prestartOnly},
		{name: "crun poststart hook", runtime: "crun", config: poststart, wantExec: true},
		{name: "crun unreadable spec", runtime: "crun", config: "{", wantExec: true},
		{name: "crun no fifo", runtime: "crun", config: noHooks, noFifo: true, wantExec: true},
		{name: "crun init gone", runtime: "crun", config: noHooks, noReader: true, wantExec: true},
		{name: "runc", runtime: "runc", config: noHooks, wantExec: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			runner := &recordingRunner{}
			r := testCLI(t, tc.runtime, false)
			r.c.Root, r.c.Runner = root, runner
			dir := filepath.Join(root, "c1")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			fifo := filepath.Join(dir, "exec.fifo")
			var init *os.File // the waiting init's end
			if !tc.noFifo {
				if err := unix.Mkfifo(fifo, 0o600); err != nil {
					t.Fatal(err)
				}
				fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK, 0)
				if err != nil {
					t.Fatal(err)
				}
				init = os.NewFile(uintptr(fd), fifo)
				defer init.Close()
				if tc.noReader {
					init.Close()
				}
			}
			err := r.Start(context.Background(), "c1")
			ran := len(runner.cmds) > 0
			if ran != tc.wantExec {
				t.Fatalf("runtime commands %q, want the runtime's start run: %v", runner.cmds, tc.wantExec)
			}
			if tc.wantExec {
				if want := strings.Join(r.startArgs("c1"), " "); runner.cmds[0] != want {
					t.Errorf("ran %q, want %q", runner.cmds[0], want)
				}
				if err == nil {
					t.Error("the runtime's failed start was not reported")
				}
				return
			}
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			if _, err := os.Lstat(fifo); !os.IsNotExist(err) {
				t.Errorf("exec.fifo still there (crun would call the container created): %v", err)
			}
			buf := make([]byte, 2)
			if n, err := init.Read(buf); n != 1 || err != nil {
				t.Errorf("the init read %d bytes (%v), want the one byte that releases it", n, err)
			}
		})
	}
}
