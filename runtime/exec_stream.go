package runtime

import (
	"context"
	"fmt"
	"io"

	"github.com/crib-dev/crib/runtime/oci"
)

// TerminalSize is a terminal's size in character cells.
type TerminalSize = oci.TerminalSize

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

// Exec runs cmd in the running container with the client's streams, until
// the command exits or ctx ends. ctx ending is the client going away: the
// command and every process it started are then killed (as ExecSync's
// timeout does), so nothing is left behind. A non-zero exit is an
// *ExitError.
func (m *Manager) Exec(ctx context.Context, id string, cmd []string, s Streams) error {
	exit, err := m.exec(ctx, id, cmd, oci.ExecRequest{
		Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, TTY: s.TTY, Resize: s.Resize,
	})
	if err != nil {
		return err
	}
	if exit.Code != 0 {
		return &ExitError{Code: exit.Code}
	}
	return nil
}
