package sandbox

import (
	"context"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
)

// DialPort connects to TCP port on the pod's loopback, inside the pod's
// network namespace: what a port-forward reaches. A pod on crib's own
// network (host network) is dialled in crib's namespace.
func (m *Manager) DialPort(ctx context.Context, id string, port int32) (net.Conn, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("%w: port %d", errdefs.ErrInvalidArgument, port)
	}
	sb, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	if sb.State != StateReady {
		return nil, fmt.Errorf("%w: pod sandbox %s is not ready", errdefs.ErrFailedPrecondition, id)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	if sb.NetNSPath == "" {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	c, err := DialInNetNS(ctx, sb.NetNSPath, addr)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox %s: %w", id, err)
	}
	return c, nil
}

// DialInNetNS dials TCP addr from inside the network namespace at nsPath.
// A socket belongs to the namespace it was made in, so only the dial runs
// there: on an OS thread of its own that joins the namespace and goes
// back; the connection then works from any thread.
func DialInNetNS(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := dialOnNSThread(ctx, nsPath, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func dialOnNSThread(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	goruntime.LockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		goruntime.UnlockOSThread()
		return nil, fmt.Errorf("opening the thread's network namespace: %w", err)
	}
	defer own.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		goruntime.UnlockOSThread()
		return nil, fmt.Errorf("joining network namespace %s: %w", nsPath, err)
	}
	c, dialErr := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the pod's namespace: keep it locked so it
		// exits with this goroutine instead of serving others.
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("leaving network namespace %s: %w", nsPath, err)
	}
	goruntime.UnlockOSThread()
	if dialErr != nil {
		return nil, fmt.Errorf("dialing %s in network namespace %s: %w", addr, nsPath, dialErr)
	}
	return c, nil
}
