package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/procfs"
)

// outputDrain bounds how long output is still copied after the process
// exited: a background process it left may hold its output open forever.
const outputDrain = time.Second

// killedCode is the exit code of a process killed when ctx ended
// (128+SIGKILL, what a shell would print).
const killedCode = 128 + int(unix.SIGKILL)

// Exec runs the process and waits for it. Without a terminal the runtime
// runs in the foreground and hands its stdio to the process; with one it
// detaches (see execTTY). When ctx ends, the process and everything it
// started are killed (killTree) and reaped before Exec returns ctx's
// error with Killed set; what was written until then has been copied.
func (r *cli) Exec(ctx context.Context, req ExecRequest) (ExecExit, error) {
	if req.TTY {
		return r.execTTY(ctx, req)
	}
	return r.execPipes(ctx, req)
}

func (r *cli) execPipes(ctx context.Context, req ExecRequest) (ExecExit, error) {
	argv := r.execArgs(req)
	cmd := exec.Command(argv[0], argv[1:]...)
	tail := &tailBuffer{max: 4096}
	cmd.Stdout = orDiscard(req.Stdout)
	cmd.Stderr = tail
	if req.Stderr != nil {
		cmd.Stderr = io.MultiWriter(req.Stderr, tail)
	}
	// crib's own pipe for stdin: the process's stdin closes when the
	// client closes its own, and Wait never waits for the client.
	var stdinW *os.File
	if req.Stdin != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return ExecExit{}, err
		}
		defer pr.Close()
		defer pw.Close()
		cmd.Stdin, stdinW = pr, pw
	}
	// Background processes the command left may hold the pipes open; the
	// output is complete when the command exits.
	cmd.WaitDelay = outputDrain
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.c.Runner.Start(cmd); err != nil {
		return ExecExit{}, err
	}
	if stdinW != nil {
		cmd.Stdin.(*os.File).Close()
		go copyAndClose(stdinW, req.Stdin)
	}
	waited := make(chan error, 1)
	go func() { waited <- r.c.Runner.Wait(cmd) }()
	select {
	case err := <-waited:
		return r.exitOf(err, cmd, req.PidFile, tail)
	case <-ctx.Done():
		r.killTree(cmd.Process.Pid, req.PidFile)
		<-waited
		return ExecExit{Code: killedCode, Killed: true}, ctx.Err()
	}
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func copyAndClose(w *os.File, r io.Reader) {
	io.Copy(w, r)
	w.Close()
}

// exitOf turns the foreground runtime's end into the process's exit.
// runc and crun exec pass the process's status on; 255 may also be the
// runtime's own failure, told apart by the pid file it writes only once
// the process started.
func (r *cli) exitOf(err error, cmd *exec.Cmd, pidFile string, tail *tailBuffer) (ExecExit, error) {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return ExecExit{}, nil
	case errors.As(err, &exitErr) && exitErr.Exited():
		if _, statErr := os.Stat(pidFile); statErr != nil {
			return ExecExit{}, fmt.Errorf("%s exec: %s", r.c.Name, lastLine(tail.Bytes()))
		}
		return ExecExit{Code: exitErr.ExitCode()}, nil
	case errors.Is(err, exec.ErrWaitDelay):
		// The process exited; a background process still holds its
		// output. What was read so far is the answer.
		return ExecExit{Code: cmd.ProcessState.ExitCode()}, nil
	default:
		return ExecExit{}, fmt.Errorf("%s exec: %w", r.c.Name, err)
	}
}

// killTree kills the exec'd process and everything it started, leaving
// nothing behind, and reaps them. The tree is frozen before anything
// dies: a process whose parent dies is handed to the container's init (a
// subreaper outside the PID namespace does not count), where it could no
// longer be told from the container's own processes. So every process
// below the runtime is stopped, round after round until no new one
// appears (a stopped process cannot fork), and only then killed.
func (r *cli) killTree(runtimePid int, pidFile string) {
	_ = syscall.Kill(runtimePid, syscall.SIGSTOP)
	stopped := map[int]bool{}
	for range 50 {
		found := false
		tree := procfs.Descendants(runtimePid)
		if pid := ReadPidFile(pidFile); pid > 0 {
			tree = append(tree, pid)
		}
		for _, pid := range tree {
			if !stopped[pid] && alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGSTOP)
				stopped[pid], found = true, true
			}
		}
		if !found {
			break
		}
	}
	pids := make([]int, 0, len(stopped))
	for pid := range stopped {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		pids = append(pids, pid)
	}
	_ = syscall.Kill(-runtimePid, syscall.SIGKILL)
	_ = syscall.Kill(runtimePid, syscall.SIGKILL)
	// The killed processes' zombies pass to crib when the runtime dies.
	r.c.Runner.Kick()
	reapKilled(pids)
}

// reapKilled waits for the processes killTree killed, which crib adopts
// (as a subreaper) once the runtime is gone. Until they are reaped they
// show as zombies inside the container, and a probe that looks for them
// right after a timeout (critest does) would still see them; the general
// reaper's grace period is too slow for that.
func reapKilled(pids []int) {
	deadline := time.Now().Add(2 * time.Second)
	for len(pids) > 0 && time.Now().Before(deadline) {
		left := pids[:0]
		for _, pid := range pids {
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			switch {
			case got == pid:
				// reaped
			case err == syscall.ECHILD && !exists(pid):
				// gone, reaped by someone else
			default:
				left = append(left, pid) // not adopted yet, or not dead yet
			}
		}
		pids = left
		if len(pids) > 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func exists(pid int) bool {
	_, err := procfs.ReadStat(pid)
	return err == nil
}

// tailBuffer keeps the last max bytes written: the runtime's own error
// message comes last.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = b.buf[over:]
	}
	return len(p), nil
}

func (b *tailBuffer) Bytes() []byte { return b.buf }

func lastLine(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
