package runtime

import (
	"context"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// exitWatcher turns exit files appearing in the exit directory into calls
// of onExit(id). conmon writes them with a rename, hence IN_MOVED_TO; a
// direct write is caught by IN_CLOSE_WRITE. When the inotify queue
// overflows, every file present is reported again (onExit is idempotent).
type exitWatcher struct {
	fd     int
	dir    string
	onExit func(id string)
}

func newExitWatcher(dir string, onExit func(string)) (*exitWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify for the exit directory: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	return &exitWatcher{fd: fd, dir: dir, onExit: onExit}, nil
}

// run reads events until ctx ends. Closing an inotify fd does not wake a
// blocked read, so the loop polls with a timeout to notice ctx.
func (w *exitWatcher) run(ctx context.Context) {
	defer unix.Close(w.fd)
	buf := make([]byte, 64*1024)
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		n, err := unix.Poll(fds, 100)
		if err != nil || n == 0 || ctx.Err() != nil {
			continue
		}
		n, err = unix.Read(w.fd, buf)
		if err != nil || n <= 0 {
			continue
		}
		w.dispatch(buf[:n])
	}
}

func (w *exitWatcher) dispatch(buf []byte) {
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameStart := off + unix.SizeofInotifyEvent
		nameEnd := nameStart + int(ev.Len)
		off = nameEnd
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			w.rescan()
			continue
		}
		if ev.Len == 0 || nameEnd > len(buf) {
			continue
		}
		name := string(trimNUL(buf[nameStart:nameEnd]))
		if name != "" && name[0] != '.' { // skip temporary files
			w.onExit(name)
		}
	}
}

func (w *exitWatcher) rescan() {
	entries, _ := os.ReadDir(w.dir)
	for _, e := range entries {
		if e.Name()[0] != '.' {
			w.onExit(e.Name())
		}
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
