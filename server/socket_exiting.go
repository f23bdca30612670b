package server

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/procfs"
)

// A killed daemon's CRI socket keeps answering until its last thread has
// exited: the descriptors are closed by the thread that leaves last, and
// the thread group leader shows as a zombie long before that (one thread
// unmapping a large heap or waiting in the kernel, on a busy machine
// tens of milliseconds and more). A supervisor that restarts crib once
// the pid it knows is a zombie, or reaped with the parent, starts the new
// daemon in that window. The connection then reaches a listener that
// nobody will ever accept on; the process that called listen() on it, as
// the socket's peer credentials name it, has exited.

// exitingListenerWait bounds how long listenCRI waits for an exiting
// process's listener to close.
const exitingListenerWait = 10 * time.Second

// listenerPID is the pid (in the caller's PID namespace, 0 when not
// visible there) of the process that listens on the other end of c.
func listenerPID(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return 0
	}
	return int(cred.Pid)
}

// processExiting reports whether the process pid has exited or is
// exiting: gone from /proc, or its leader a zombie (its other threads,
// if any, are being torn down).
func processExiting(pid int) bool {
	st, err := procfs.ReadStat(pid)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	return err == nil && st.Exited()
}

// answeredByExiting reports whether the socket at path answers only
// because an exiting process still holds its listener, and then waits
// (up to exitingListenerWait) until it no longer answers. It returns
// false as soon as a live process, or one it cannot see, answers.
func answeredByExiting(path string, c net.Conn, log *slog.Logger) bool {
	deadline := time.Now().Add(exitingListenerWait)
	for {
		pid := listenerPID(c)
		c.Close()
		if pid <= 0 || !processExiting(pid) || time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
		var err error
		if c, err = net.DialTimeout("unix", path, time.Second); err != nil {
			log.Info("the CRI socket answered for an exiting process until it closed; taking it over",
				"socket", path, "pid", pid, "waited", time.Since(deadline.Add(-exitingListenerWait)).Round(time.Millisecond))
			return true
		}
	}
}
