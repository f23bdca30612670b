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
	"path/filepath"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime/oci"
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

// ExecSync runs cmd in the running container and collects its output: it
// is Exec into capped buffers, with the timeout as Exec's context. It
// calls the OCI runtime's exec directly, not through the monitor: a probe
// runs it every few seconds and the monitor would add a process and a
// round trip. A timeout of 0 means none. The command's process gets the
// container's identity and confinement: the spec's process (user, env,
// cwd, capabilities, no_new_privs, rlimits, AppArmor and SELinux labels)
// with the command swapped in.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (ExecResult, error) {
	stdout, stderr := &cappedBuffer{max: MaxExecOutput}, &cappedBuffer{max: MaxExecOutput}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	exit, err := m.exec(runCtx, id, cmd, oci.ExecRequest{Stdout: stdout, Stderr: stderr})
	if exit.Killed && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: execTimedOutCode, TimedOut: true}, nil
	}
	if err != nil {
		return ExecResult{}, err
	}
	return ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(exit.Code)}, nil
}

// exec is the one path of ExecSync and Exec: the target checks, the
// process file, the runtime's exec (which kills the process and all it
// started when ctx ends), and telling a failed exec from a container that
// exited under it.
func (m *Manager) exec(ctx context.Context, id string, cmd []string, req oci.ExecRequest) (oci.ExecExit, error) {
	c, rt, err := m.execTarget(id, cmd)
	if err != nil {
		return oci.ExecExit{}, err
	}
	req.ID = c.ID
	req.ConsoleDir = filepath.Join(m.runRoot, "console")
	req.ProcessFile, req.PidFile, err = writeExecProcess(m.files(c.ID).bundle, cmd, req.TTY)
	if err != nil {
		return oci.ExecExit{}, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	defer os.Remove(req.ProcessFile)
	defer os.Remove(req.PidFile)
	exit, err := rt.Exec(ctx, req)
	if err != nil && !exit.Killed {
		if c, serr := m.Status(c.ID); serr == nil && c.State != StateRunning {
			return exit, fmt.Errorf("%w: container %s exited during exec: %v", errdefs.ErrFailedPrecondition, c.ID, err)
		}
		return exit, fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	return exit, err
}

// execTarget checks the container exists and runs, and finds its runtime.
func (m *Manager) execTarget(id string, cmd []string) (*Container, oci.Runtime, error) {
	if len(cmd) == 0 {
		return nil, nil, fmt.Errorf("%w: exec in container %s: empty command", errdefs.ErrInvalidArgument, id)
	}
	c, err := m.Status(id)
	if err != nil {
		return nil, nil, err
	}
	if c.State != StateRunning {
		return nil, nil, fmt.Errorf("%w: container %s is %s, not running", errdefs.ErrFailedPrecondition, id, c.State)
	}
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return nil, nil, err
	}
	return c, rt, nil
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
