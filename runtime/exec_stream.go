package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
)

// TerminalSize is a terminal's size in character cells.
type TerminalSize struct {
	Width, Height uint16
}

// Streams are a streaming client's ends of an exec or an attach.
type Streams struct {
	// Stdin is nil when the client sends no input; its EOF is the
	// client closing its stdin.
	Stdin io.Reader
	// Stdout and Stderr may be nil: that output is dropped. With TTY
	// everything arrives on Stdout.
	Stdout, Stderr io.Writer
	TTY            bool
	// Resize carries the client's terminal size; nil or closed when
	// there is none.
	Resize <-chan TerminalSize
}

// ExitError is a streamed command that exited with a non-zero code. Its
// methods are those of k8s.io/utils/exec.ExitError, by which the
// streaming server recognises an exit code to report to the client.
type ExitError struct{ Code int }

func (e *ExitError) Error() string   { return fmt.Sprintf("command exited with code %d", e.Code) }
func (e *ExitError) String() string  { return e.Error() }
func (e *ExitError) Exited() bool    { return true }
func (e *ExitError) ExitStatus() int { return e.Code }

// outputDrain bounds how long output is still copied after the command
// exited: a background process it left may hold its output open forever.
const outputDrain = time.Second

// Exec runs cmd in the running container with the client's streams, until
// the command exits or ctx ends. ctx ending is the client going away: the
// command and every process it started are then killed (as ExecSync's
// timeout does), so nothing is left behind. A non-zero exit is an
// *ExitError.
func (m *Manager) Exec(ctx context.Context, id string, cmd []string, s Streams) error {
	c, rt, err := m.execTarget(id, cmd)
	if err != nil {
		return err
	}
	procFile, pidFile, err := writeExecProcess(m.files(c.ID).bundle, cmd, s.TTY)
	if err != nil {
		return fmt.Errorf("exec in container %s: %w", c.ID, err)
	}
	defer os.Remove(procFile)
	defer os.Remove(pidFile)
	if s.TTY {
		err = m.execTTY(ctx, rt, c.ID, procFile, pidFile, s)
	} else {
		err = m.execPipes(ctx, rt, c.ID, procFile, pidFile, s)
	}
	var exitErr *ExitError
	if err != nil && !errors.As(err, &exitErr) && ctx.Err() == nil {
		if c, serr := m.Status(c.ID); serr == nil && c.State != StateRunning {
			return fmt.Errorf("%w: container %s exited during exec: %v", errdefs.ErrFailedPrecondition, c.ID, err)
		}
	}
	return err
}

// execTarget checks the container exists and runs, and finds its runtime.
func (m *Manager) execTarget(id string, cmd []string) (*Container, ociRuntime, error) {
	if len(cmd) == 0 {
		return nil, ociRuntime{}, fmt.Errorf("%w: exec in container %s: empty command", errdefs.ErrInvalidArgument, id)
	}
	c, err := m.Status(id)
	if err != nil {
		return nil, ociRuntime{}, err
	}
	if c.State != StateRunning {
		return nil, ociRuntime{}, fmt.Errorf("%w: container %s is %s, not running", errdefs.ErrFailedPrecondition, id, c.State)
	}
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return nil, ociRuntime{}, err
	}
	return c, rt, nil
}

// execPipes runs `runtime exec` in the foreground; without a terminal the
// runtime hands its own stdio to the command, so the pipes crib gives it
// are the command's.
func (m *Manager) execPipes(ctx context.Context, rt ociRuntime, id, procFile, pidFile string, s Streams) error {
	cmd := exec.Command(rt.h.Path, append(rt.globalArgs(), "exec", "--process", procFile, "--pid-file", pidFile, id)...)
	tail := &tailBuffer{max: 4096}
	cmd.Stdout = s.Stdout
	cmd.Stderr = tail
	if s.Stderr != nil {
		cmd.Stderr = io.MultiWriter(s.Stderr, tail)
	}
	var stdinW *os.File
	if s.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer r.Close()
		defer w.Close()
		cmd.Stdin, stdinW = r, w
	}
	cmd.WaitDelay = outputDrain
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.reaper.Start(cmd); err != nil {
		return err
	}
	if stdinW != nil {
		cmd.Stdin.(*os.File).Close()
		go copyStdin(stdinW, s.Stdin)
	}
	waited := make(chan error, 1)
	go func() { waited <- m.reaper.Wait(cmd) }()
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		m.killExec(cmd.Process.Pid, pidFile)
		<-waited
		return ctx.Err()
	}
	return execExit(rt, err, cmd, pidFile, tail)
}

// copyStdin copies the client's input to the command and closes the
// command's stdin when the client closes its own.
func copyStdin(w *os.File, r io.Reader) {
	io.Copy(w, r)
	w.Close()
}

// execExit turns the runtime's exit into Exec's result. runc exec passes
// the command's status on; 255 may also be runc's own failure, told apart
// by the pid file it writes only once the command started.
func execExit(rt ociRuntime, err error, cmd *exec.Cmd, pidFile string, tail *tailBuffer) error {
	var exitErr *exec.ExitError
	code := 0
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exitErr) && exitErr.Exited():
		code = exitErr.ExitCode()
		if _, statErr := os.Stat(pidFile); statErr != nil {
			return fmt.Errorf("%s exec: %s", rt.h.Name, lastLine(tail.Bytes()))
		}
	case errors.Is(err, exec.ErrWaitDelay):
		code = cmd.ProcessState.ExitCode()
	default:
		return fmt.Errorf("%s exec: %w", rt.h.Name, err)
	}
	if code == 0 {
		return nil
	}
	return &ExitError{Code: code}
}

// execTTY runs `runtime exec --detach --tty`: the runtime makes the pty
// inside the container, sends its master over a console socket and exits
// (runc takes a console socket only when it detaches); the command then
// passes to crib, the subreaper, which waits for it. crib copies between
// the master and the client, and resizes it.
func (m *Manager) execTTY(ctx context.Context, rt ociRuntime, id, procFile, pidFile string, s Streams) error {
	l, sockPath, err := m.listenConsole()
	if err != nil {
		return fmt.Errorf("exec in container %s: %w", id, err)
	}
	defer os.Remove(sockPath)
	defer l.Close()
	master, pid, err := m.startTTYExec(ctx, rt, id, procFile, pidFile, l, sockPath)
	if err != nil {
		return err
	}
	defer master.Close()
	exited := make(chan struct{})
	var status unix.WaitStatus
	var waitErr error
	go func() { status, waitErr = m.reaper.WaitAdopted(pid); close(exited) }()

	done := make(chan struct{})
	defer close(done)
	go resizePty(master, s.Resize, done)
	if s.Stdin != nil {
		go copyTerminalInput(master, s.Stdin)
	}
	out := s.Stdout
	if out == nil {
		out = io.Discard
	}
	copied := make(chan struct{})
	go func() { io.Copy(out, master); close(copied) }()

	select {
	case <-exited:
	case <-ctx.Done():
		m.killExec(pid, pidFile)
		<-exited
		return ctx.Err()
	}
	// The pty reads EIO once every holder of its other end is gone.
	master.SetReadDeadline(time.Now().Add(outputDrain))
	<-copied
	if waitErr != nil {
		return fmt.Errorf("waiting for the command exec'd in container %s: %w", id, waitErr)
	}
	return waitStatusError(status)
}

// startTTYExec runs the runtime until it detaches and returns the pty
// master and the command's pid.
func (m *Manager) startTTYExec(ctx context.Context, rt ociRuntime, id, procFile, pidFile string, l *net.UnixListener, sockPath string) (*os.File, int, error) {
	cmd := exec.Command(rt.h.Path, append(rt.globalArgs(), "exec", "--detach", "--tty", "--console-socket", sockPath,
		"--process", procFile, "--pid-file", pidFile, id)...)
	tail := &tailBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = tail, tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.reaper.Start(cmd); err != nil {
		return nil, 0, err
	}
	exited := make(chan struct{})
	var runErr error
	go func() { runErr = m.reaper.Wait(cmd); close(exited) }()
	master, err := receiveConsole(ctx, l, exited)
	if err != nil {
		if !errors.Is(err, errRuntimeExited) {
			m.killExec(cmd.Process.Pid, pidFile)
		}
		<-exited
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		return nil, 0, fmt.Errorf("%s exec: %v: %s", rt.h.Name, err, lastLine(tail.Bytes()))
	}
	select {
	case <-exited:
	case <-ctx.Done():
		m.killExec(cmd.Process.Pid, pidFile)
		<-exited
		master.Close()
		return nil, 0, ctx.Err()
	}
	pid := readPidFile(pidFile)
	if runErr != nil || pid <= 0 {
		master.Close()
		return nil, 0, fmt.Errorf("%s exec: %v: %s", rt.h.Name, runErr, lastLine(tail.Bytes()))
	}
	return master, pid, nil
}

// waitStatusError is a command's exit as Exec reports it; death by a
// signal is 128+signal, as a shell reports it.
func waitStatusError(ws unix.WaitStatus) error {
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if code == 0 {
		return nil
	}
	return &ExitError{Code: code}
}

// listenConsole makes the console socket the runtime sends the pty
// master to, under the runroot: a unix socket path must stay short.
func (m *Manager) listenConsole() (*net.UnixListener, string, error) {
	dir := filepath.Join(m.runRoot, "console")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	path := filepath.Join(dir, hex.EncodeToString(token))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, "", fmt.Errorf("console socket: %w", err)
	}
	l.SetUnlinkOnClose(true)
	return l, path, nil
}

var errRuntimeExited = errors.New("the runtime exited before sending the terminal")

// receiveConsole accepts the runtime's one connection and takes the pty
// master it passes (SCM_RIGHTS). A runtime that exits first failed.
func receiveConsole(ctx context.Context, l *net.UnixListener, exited <-chan struct{}) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	got := make(chan result, 1)
	l.SetDeadline(time.Now().Add(ociTimeout))
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			got <- result{err: fmt.Errorf("waiting for the runtime's terminal: %w", err)}
			return
		}
		defer c.Close()
		f, err := readPassedFd(c)
		got <- result{f, err}
	}()
	select {
	case r := <-got:
		return r.f, r.err
	case <-exited:
		// A short command may have run and exited already: the runtime
		// sent the terminal before it exited, so it waits to be accepted.
		l.SetDeadline(time.Now().Add(200 * time.Millisecond))
		if r := <-got; r.f != nil {
			return r.f, nil
		}
		return nil, errRuntimeExited
	case <-ctx.Done():
		l.Close() // ends the accept
		if r := <-got; r.f != nil {
			r.f.Close()
		}
		return nil, ctx.Err()
	}
}

// readPassedFd reads one message carrying one file descriptor.
func readPassedFd(c *net.UnixConn) (*os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("receiving the terminal: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receiving the terminal: no descriptor passed (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receiving the terminal: want one descriptor, got %d (%v)", len(fds), err)
	}
	unix.CloseOnExec(fds[0])
	// Non-blocking, so the file uses the poller and read deadlines work.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

// resizePty applies the client's terminal sizes until the channel closes
// or the exec ends.
func resizePty(master *os.File, sizes <-chan TerminalSize, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case size, ok := <-sizes:
			if !ok {
				return
			}
			setWinsize(master, size)
		}
	}
}

func setWinsize(f *os.File, size TerminalSize) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Height, Col: size.Width})
	})
	return errors.Join(err, ioErr)
}

// endOfTransmission is what a terminal sends for ^D.
const endOfTransmission = 0x04

// copyTerminalInput copies the client's input to the pty. A pty cannot be
// half-closed, so the client closing its stdin becomes a ^D, which a
// program reading the terminal in its usual (canonical) mode takes as end
// of input.
func copyTerminalInput(master *os.File, in io.Reader) {
	if _, err := io.Copy(master, in); err == nil {
		master.Write([]byte{endOfTransmission})
	}
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
