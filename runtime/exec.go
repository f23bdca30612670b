package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
)

// MaxExecOutput caps each of an ExecSync's stdout and stderr; what comes
// beyond is read and dropped, so the command never blocks on a full pipe.
const MaxExecOutput = 16 << 20

// ExecResult is what ExecSync reports.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
	// TimedOut: the command ran past its timeout and was killed, with
	// every process it started.
	TimedOut bool
}

// execTimedOutCode is the exit code reported for a command killed at its
// timeout (128+SIGKILL, what a shell would print).
const execTimedOutCode = 137

// ExecSync runs cmd in the running container and collects its output. It
// calls the OCI runtime's exec directly, not through the monitor: a probe
// runs it every few seconds and the monitor would add a process and a
// round trip. A timeout of 0 means none. The command's process gets the
// container's identity and confinement: the spec's process (user, env,
// cwd, capabilities, no_new_privs, rlimits, AppArmor and SELinux labels)
// with the command swapped in.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (ExecResult, error) {
	if len(cmd) == 0 {
		return ExecResult{}, fmt.Errorf("%w: exec in container %s: empty command", errdefs.ErrInvalidArgument, id)
	}
	c, err := m.Status(id)
	if err != nil {
		return ExecResult{}, err
	}
	if c.State != StateRunning {
		return ExecResult{}, fmt.Errorf("%w: container %s is %s, not running", errdefs.ErrFailedPrecondition, id, c.State)
	}
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return ExecResult{}, err
	}
	bundle := m.files(id).bundle
	procFile, pidFile, err := writeExecProcess(bundle, cmd, false)
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", id, err)
	}
	defer os.Remove(procFile)
	defer os.Remove(pidFile)
	res, err := m.runExec(ctx, rt, id, procFile, pidFile, timeout)
	if err != nil {
		// The container may have exited under the command.
		if c, serr := m.Status(id); serr == nil && c.State != StateRunning {
			return ExecResult{}, fmt.Errorf("%w: container %s exited during exec: %v", errdefs.ErrFailedPrecondition, id, err)
		}
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", id, err)
	}
	return res, nil
}

// writeExecProcess writes the exec'd process's spec next to the bundle's
// config.json; each exec gets its own files, so execs run concurrently.
// tty asks for a terminal (the runtime then needs a console socket).
func writeExecProcess(bundle string, cmd []string, tty bool) (procFile, pidFile string, err error) {
	spec, err := readSpec(bundle)
	if err != nil {
		return "", "", err
	}
	if spec.Process == nil {
		return "", "", errors.New("the container's spec has no process")
	}
	p := *spec.Process
	p.Args = append([]string(nil), cmd...)
	p.Terminal = tty
	p.ConsoleSize = nil
	data, err := json.Marshal(&p)
	if err != nil {
		return "", "", err
	}
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	name := "exec-" + hex.EncodeToString(token)
	procFile = filepath.Join(bundle, name+".json")
	pidFile = filepath.Join(bundle, name+".pid")
	if err := os.WriteFile(procFile, data, 0o600); err != nil {
		return "", "", err
	}
	return procFile, pidFile, nil
}

// runExec runs `runtime exec` in the foreground and waits. The runtime
// (runc exec) is a subreaper and the parent of the exec'd process; on
// timeout crib stops it, kills every process below it, then kills it.
func (m *Manager) runExec(ctx context.Context, rt ociRuntime, id, procFile, pidFile string, timeout time.Duration) (ExecResult, error) {
	cmd := exec.Command(rt.h.Path, append(rt.globalArgs(), "exec", "--process", procFile, "--pid-file", pidFile, id)...)
	stdout, stderr := &cappedBuffer{max: MaxExecOutput}, &cappedBuffer{max: MaxExecOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Background processes the command left may hold the pipes open; the
	// output is complete when the command exits.
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.reaper.Start(cmd); err != nil {
		return ExecResult{}, err
	}
	waited := make(chan error, 1)
	go func() { waited <- m.reaper.Wait(cmd) }()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	var err error
	timedOut := false
	select {
	case err = <-waited:
	case <-expired:
		timedOut = true
		killed := m.killExec(cmd.Process.Pid, pidFile)
		err = <-waited
		reapKilled(killed)
	case <-ctx.Done():
		killed := m.killExec(cmd.Process.Pid, pidFile)
		<-waited
		reapKilled(killed)
		return ExecResult{}, ctx.Err()
	}
	res := ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), TimedOut: timedOut}
	if timedOut {
		res.ExitCode = execTimedOutCode
		return res, nil
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.Exited():
		// runc exec passes the command's status on; 255 may also be
		// runc's own failure, told apart by what it printed.
		res.ExitCode = int32(exitErr.ExitCode())
		if _, statErr := os.Stat(pidFile); statErr != nil {
			return ExecResult{}, fmt.Errorf("%s exec: %s", rt.h.Name, lastLine(res.Stderr))
		}
	case errors.Is(err, exec.ErrWaitDelay):
		// The command exited; a background process still holds its
		// output. What was read so far is the answer.
		res.ExitCode = int32(cmd.ProcessState.ExitCode())
	default:
		return ExecResult{}, err
	}
	return res, nil
}

// killExec kills the exec'd command and everything it started, leaving no
// process behind. The tree is frozen before anything dies: a process whose
// parent dies is handed to the container's init (a subreaper outside the
// PID namespace does not count), where it could no longer be told from
// the container's own processes. So every process below runc exec is
// stopped, round after round until no new one appears (a stopped process
// cannot fork), and only then killed.
func (m *Manager) killExec(runtimePid int, pidFile string) []int {
	_ = syscall.Kill(runtimePid, syscall.SIGSTOP)
	stopped := map[int]bool{}
	for range 50 {
		found := false
		tree := descendants(runtimePid)
		if pid := readPidFile(pidFile); pid > 0 {
			tree = append(tree, pid)
		}
		for _, pid := range tree {
			if !stopped[pid] && processAlive(pid) {
				_ = syscall.Kill(pid, syscall.SIGSTOP)
				stopped[pid], found = true, true
			}
		}
		if !found {
			break
		}
	}
	for pid := range stopped {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-runtimePid, syscall.SIGKILL)
	_ = syscall.Kill(runtimePid, syscall.SIGKILL)
	// The killed processes' zombies pass to crib when runc exec dies.
	m.reaper.Kick()
	pids := make([]int, 0, len(stopped))
	for pid := range stopped {
		pids = append(pids, pid)
	}
	return pids
}

// reapKilled waits for the processes killExec killed, which crib adopts
// (as a subreaper) once runc exec is gone. Until they are reaped they show
// as zombies inside the container, and a probe that looks for them right
// after a timeout (critest does) would still see them; the general
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
			case err == syscall.ECHILD && processState(pid) == 0:
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

// cappedBuffer keeps the first max bytes written and drops the rest.
type cappedBuffer struct {
	max int
	buf []byte
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte { return b.buf }

var _ io.Writer = (*cappedBuffer)(nil)

func lastLine(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n') {
		s = s[:len(s)-1]
	}
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
