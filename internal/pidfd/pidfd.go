// Package pidfd waits for a process to exit on a pidfd, in the Go
// runtime's poller, so that a wait holds no OS thread. It neither reaps
// nor signals: that belongs to the packages that own the processes.
package pidfd

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Open opens a non-blocking pidfd of pid, ready for Await.
func Open(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "pidfd"), nil
}

// Await returns nil once the process behind f has exited (its pidfd polls
// readable), or an error at deadline (zero: none), when ctx ends, or when
// the pidfd cannot be polled (Linux before 5.10).
func Await(ctx context.Context, f *os.File, deadline time.Time) error {
	if err := f.SetReadDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Read(func(fd uintptr) bool {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return n > 0 || (err != nil && err != unix.EINTR)
	})
}
