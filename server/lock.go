package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// instanceLock is an exclusive flock held for the daemon's lifetime on each
// of its roots, so that a second `crib serve` on the same roots refuses
// instead of corrupting state. The kernel drops it when the holder dies, so a
// crash never leaves a stale lock behind.
type instanceLock struct {
	files []*os.File
}

// ErrAlreadyRunning is returned when another crib holds one of the roots.
var ErrAlreadyRunning = errors.New("another crib is already running")

func acquireInstanceLock(dirs ...string) (*instanceLock, error) {
	l := &instanceLock{}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			l.release()
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
		path := filepath.Join(dir, "crib.lock")
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			l.release()
			return nil, fmt.Errorf("opening lock %s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			holder := readHolder(f)
			f.Close()
			l.release()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w on %s (pid %s holds %s); stop it first, or give this one other --root and --runroot", ErrAlreadyRunning, dir, holder, path)
			}
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		l.files = append(l.files, f)
	}
	l.recordHolder(os.Getpid())
	return l, nil
}

func readHolder(f *os.File) string {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	if s := strings.TrimSpace(string(buf[:n])); s != "" {
		return s
	}
	return "unknown"
}

func (l *instanceLock) recordHolder(pid int) {
	for _, f := range l.files {
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(pid)+"\n"), 0)
	}
}

// fds are the lock's descriptors, for a program crib executes to hold.
func (l *instanceLock) fds() []int {
	out := make([]int, 0, len(l.files))
	for _, f := range l.files {
		out = append(out, int(f.Fd()))
	}
	return out
}

func (l *instanceLock) release() {
	for _, f := range l.files {
		f.Close()
	}
	l.files = nil
}
