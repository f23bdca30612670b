package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime/oci"
)

// Attach streams the running container's own stdio through its monitor's
// attach socket (see the conmon facts in monitor.go) until the container
// exits or ctx ends (the client went away). Input reaches the container
// only when it was created with stdin; the client closing its stdin closes
// the container's when the container asked for stdin_once. Resizes go to
// the monitor's control fifo.
func (m *Manager) Attach(ctx context.Context, id string, s Streams) error {
	c, err := m.Status(id)
	if err != nil {
		return err
	}
	if c.State != StateRunning {
		return fmt.Errorf("%w: container %s is %s, not running", errdefs.ErrFailedPrecondition, id, c.State)
	}
	bundle := m.files(c.ID).bundle
	conn, err := dialAttach(bundle)
	if err != nil {
		return fmt.Errorf("attaching to container %s: %w", c.ID, err)
	}
	defer conn.Close()

	done := make(chan struct{})
	defer close(done)
	if c.Config.GetTty() {
		go forwardResizes(bundle, s.Resize, done)
	}
	if s.Stdin != nil && c.Config.GetStdin() {
		go sendAttachInput(conn, s.Stdin)
	}
	copied := make(chan error, 1)
	go func() { copied <- copyAttachOutput(conn, s.Stdout, s.Stderr) }()
	select {
	case err := <-copied:
		return err
	case <-ctx.Done():
		conn.Close()
		<-copied
		return ctx.Err()
	}
}

// dialAttach connects to <bundle>/attach. The path goes through the
// directory's /proc/self/fd entry: a unix socket path is limited to 107
// bytes and a bundle path under a long runroot is not.
func dialAttach(bundle string) (*net.UnixConn, error) {
	dir, err := os.OpenFile(bundle, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	addr := &net.UnixAddr{Net: "unixpacket", Name: filepath.Join("/proc/self/fd", fmt.Sprint(dir.Fd()), "attach")}
	conn, err := net.DialUnix("unixpacket", nil, addr)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: the container's monitor is not running: %v", errdefs.ErrFailedPrecondition, err)
		}
		return nil, err
	}
	return conn, nil
}

// attachPacketMax is the largest input packet sent: conmon reads each
// into a 32 KiB buffer and a longer packet would be cut.
const attachPacketMax = 8192

// sendAttachInput sends the client's input as packets, then shuts the
// write side, which tells the monitor the client's stdin closed.
func sendAttachInput(conn *net.UnixConn, in io.Reader) {
	buf := make([]byte, attachPacketMax)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			break
		}
	}
	conn.CloseWrite()
}

// Output streams in the first byte of each packet conmon sends: its
// stdpipe_t values (1 is stdin, which it never sends).
const (
	attachStdout = 2
	attachStderr = 3
)

// copyAttachOutput reads the monitor's packets until it closes the socket
// (the container exited) and routes each to its stream.
func copyAttachOutput(conn *net.UnixConn, stdout, stderr io.Writer) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 1 {
			var w io.Writer
			switch buf[0] {
			case attachStdout:
				w = stdout
			case attachStderr:
				w = stderr
			}
			if w != nil {
				if _, werr := w.Write(buf[1:n]); werr != nil {
					return werr
				}
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the container's output: %w", err)
		}
	}
}

// forwardResizes passes terminal sizes to the monitor, which resizes the
// container's pty.
func forwardResizes(bundle string, sizes <-chan TerminalSize, done <-chan struct{}) {
	oci.EachSize(sizes, done, func(size TerminalSize) {
		_ = sendMonitorControl(bundle, fmt.Sprintf("%d %d %d\n", winResizeMessage, size.Height, size.Width))
	})
}

// winResizeMessage is conmon's ctl message type 1 (WIN_RESIZE_EVENT).
const winResizeMessage = 1
