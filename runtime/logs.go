package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Container logs are written by conmon in the CRI log format the kubelet
// and `crictl logs` read: one line per chunk,
//
//	<RFC 3339 timestamp> <stdout|stderr> <P|F> <message>
//
// P marks a partial line (the chunk ended without a newline), F the full
// line's last chunk.

// reopenWait bounds how long ReopenLog waits for the monitor to create the
// new log file.
const reopenWait = 5 * time.Second

// ReopenLog makes the monitor reopen the container's log file, after the
// kubelet moved it away for rotation. It returns once the new file exists.
// A container that is not running has no monitor to ask: that is
// ErrFailedPrecondition, as the CRI asks.
func (m *Manager) ReopenLog(ctx context.Context, id string) error {
	c, err := m.Status(id)
	if err != nil {
		return err
	}
	if c.State != StateRunning {
		return fmt.Errorf("%w: container %s is %s; only a running container's log can be reopened", errdefs.ErrFailedPrecondition, id, c.State)
	}
	if c.LogPath == "" {
		return fmt.Errorf("%w: container %s has no log path", errdefs.ErrFailedPrecondition, id)
	}
	if err := sendMonitorControl(m.files(id).bundle, reopenLogMessage); err != nil {
		return fmt.Errorf("reopening the log of container %s: %w", id, err)
	}
	return waitForFile(ctx, c.LogPath, reopenWait)
}

// waitForFile waits until path exists.
func waitForFile(ctx context.Context, path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		_, err := os.Stat(path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the monitor did not reopen %s within %s", errdefs.ErrUnavailable, path, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
