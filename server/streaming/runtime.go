package streaming

import (
	"context"
	"io"
	"net"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// Runtime is what the streaming server needs of crib's containers and
// pods. The wiring (package server) adapts crib's runtime and sandbox
// managers to it; this package must not reach them itself.
type Runtime interface {
	// Exec runs cmd in the running container id with the client's
	// streams until it exits or ctx ends (the client went away); a
	// non-zero exit is an error with an ExitStatus() int method.
	Exec(ctx context.Context, id string, cmd []string, s Streams) error
	// Attach connects the streams to the container's own process.
	Attach(ctx context.Context, id string, s Streams) error
	// DialPort connects to port inside pod id's network namespace.
	DialPort(ctx context.Context, id string, port int32) (net.Conn, error)
}

// Streams are a session's ends of the client's streams; a stream the
// client did not ask for is nil.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	// Resize carries the client's terminal sizes; nil without a TTY.
	Resize <-chan TerminalSize
}

// TerminalSize is a client terminal's size, as the protocol sends it.
type TerminalSize = remotecommand.TerminalSize

// cribRuntime is Runtime in the shape of k8s.io/cri-streaming's Runtime,
// which the protocol handlers call.
type cribRuntime struct{ rt Runtime }

func (r cribRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return r.rt.Exec(ctx, id, cmd, streams(in, out, errOut, tty, resize))
}

func (r cribRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return r.rt.Attach(ctx, id, streams(in, out, errOut, tty, resize))
}

// PortForward copies between the client's stream and the pod's port
// until the pod's side ends or the client goes away; the client closing
// its side is passed on as a half-close.
func (r cribRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	conn, err := r.rt.DialPort(ctx, podID, port)
	if err != nil {
		return err
	}
	defer conn.Close()
	go func() {
		io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(stream, conn)
		copied <- err
	}()
	select {
	case err := <-copied:
		return err
	case <-ctx.Done():
		conn.Close()
		<-copied
		return nil
	}
}

// streams converts the streaming library's ends to Streams; a nil
// WriteCloser stays a nil Writer.
func streams(in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) Streams {
	s := Streams{Stdin: in, TTY: tty, Resize: resize}
	if out != nil {
		s.Stdout = out
	}
	if errOut != nil {
		s.Stderr = errOut
	}
	return s
}
