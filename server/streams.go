package server

import (
	"context"
	"net"

	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/server/rootless"
	"github.com/crib-dev/crib/server/streaming"
)

// streamRuntime is streaming.Runtime on crib's containers and pods: the
// streaming server reaches them only through it.
type streamRuntime struct {
	containers *runtime.Manager
	pods       *sandbox.Manager
}

func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, s streaming.Streams) error {
	return r.containers.Exec(ctx, id, cmd, runtimeStreams(ctx, s))
}

func (r streamRuntime) Attach(ctx context.Context, id string, s streaming.Streams) error {
	return r.containers.Attach(ctx, id, runtimeStreams(ctx, s))
}

func (r streamRuntime) DialPort(ctx context.Context, id string, port int32) (net.Conn, error) {
	return r.pods.DialPort(ctx, id, port)
}

// runtimeStreams converts a session's streams to runtime's.
func runtimeStreams(ctx context.Context, s streaming.Streams) runtime.Streams {
	rs := runtime.Streams{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, TTY: s.TTY}
	if s.Resize != nil {
		rs.Resize = convertResizes(ctx, s.Resize)
	}
	return rs
}

func convertResizes(ctx context.Context, in <-chan streaming.TerminalSize) <-chan runtime.TerminalSize {
	out := make(chan runtime.TerminalSize)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case size, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- runtime.TerminalSize{Width: size.Width, Height: size.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// streamingHostPorts is the parent's portal for the streaming port; nil
// (no host side) when crib lives in the host's namespaces.
func streamingHostPorts(hs *rootless.HostSide) streaming.HostPorts {
	if hs.Ports == nil {
		return nil
	}
	return hs.Ports
}
