package oci

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
)

// execTTY runs `runtime exec --detach --tty`: the runtime makes the pty
// inside the container, sends its master over a console socket and exits;
// the process then passes to crib, the subreaper, which waits for it.
// crib copies between the master and the client, and resizes it.
func (r *cli) execTTY(ctx context.Context, req ExecRequest) (ExecExit, error) {
	l, sockPath, err := listenConsole(req.ConsoleDir)
	if err != nil {
		return ExecExit{}, fmt.Errorf("exec in container %s: %w", req.ID, err)
	}
	defer os.Remove(sockPath)
	defer l.Close()
	master, pid, err := r.startTTYExec(ctx, req, l, sockPath)
	if err != nil {
		if ctx.Err() != nil {
			return ExecExit{Code: killedCode, Killed: true}, ctx.Err()
		}
		return ExecExit{}, err
	}
	defer master.Close()
	exited := make(chan struct{})
	var status unix.WaitStatus
	var waitErr error
	go func() { status, waitErr = r.c.Runner.WaitAdopted(pid); close(exited) }()

	done := make(chan struct{})
	defer close(done)
	go EachSize(req.Resize, done, func(size TerminalSize) { setWinsize(master, size) })
	if req.Stdin != nil {
		go copyTerminalInput(master, req.Stdin)
	}
	copied := make(chan struct{})
	go func() { io.Copy(orDiscard(req.Stdout), master); close(copied) }()

	select {
	case <-exited:
	case <-ctx.Done():
		r.killTree(pid, req.PidFile)
		<-exited
		return ExecExit{Code: killedCode, Killed: true}, ctx.Err()
	}
	// The pty reads EIO once every holder of its other end is gone.
	master.SetReadDeadline(time.Now().Add(outputDrain))
	<-copied
	if waitErr != nil {
		return ExecExit{}, fmt.Errorf("waiting for the process exec'd in container %s: %w", req.ID, waitErr)
	}
	return ExecExit{Code: statusCode(status)}, nil
}

// startTTYExec runs the runtime until it detaches and returns the pty
// master and the process's pid.
func (r *cli) startTTYExec(ctx context.Context, req ExecRequest, l *net.UnixListener, sockPath string) (*os.File, int, error) {
	argv := r.execTTYArgs(req, sockPath)
	cmd := exec.Command(argv[0], argv[1:]...)
	tail := &tailBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = tail, tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.c.Runner.Start(cmd); err != nil {
		return nil, 0, err
	}
	exited := make(chan struct{})
	var runErr error
	go func() { runErr = r.c.Runner.Wait(cmd); close(exited) }()
	master, err := receiveConsole(ctx, l, exited)
	if err != nil {
		if !errors.Is(err, errRuntimeExited) {
			r.killTree(cmd.Process.Pid, req.PidFile)
		}
		<-exited
		return nil, 0, fmt.Errorf("%s exec: %v: %s", r.c.Name, err, lastLine(tail.Bytes()))
	}
	select {
	case <-exited:
	case <-ctx.Done():
		r.killTree(cmd.Process.Pid, req.PidFile)
		<-exited
		master.Close()
		return nil, 0, ctx.Err()
	}
	pid := ReadPidFile(req.PidFile)
	if runErr != nil || pid <= 0 {
		master.Close()
		return nil, 0, fmt.Errorf("%s exec: %v: %s", r.c.Name, runErr, lastLine(tail.Bytes()))
	}
	return master, pid, nil
}

// statusCode is a process's exit as a shell reports it: death by a
// signal is 128+signal.
func statusCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// listenConsole makes the console socket the runtime sends the pty
// master to.
func listenConsole(dir string) (*net.UnixListener, string, error) {
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
	l.SetDeadline(time.Now().Add(timeout))
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
		// A short process may have run and exited already: the runtime
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

// EachSize calls apply with each terminal size a client sends until the
// channel closes or done is closed.
func EachSize(sizes <-chan TerminalSize, done <-chan struct{}, apply func(TerminalSize)) {
	for {
		select {
		case <-done:
			return
		case size, ok := <-sizes:
			if !ok {
				return
			}
			apply(size)
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
