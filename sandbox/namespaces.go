package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/loopback"
	"github.com/crib-dev/crib/internal/mountinfo"
	"github.com/crib-dev/crib/internal/pidfd"
	"github.com/crib-dev/crib/internal/procfs"
)

// nsKind is a namespace a pod may own; the name is /proc/<tid>/ns/<name>.
type nsKind struct {
	name string
	flag int
}

var (
	nsNet = nsKind{"net", unix.CLONE_NEWNET}
	nsIPC = nsKind{"ipc", unix.CLONE_NEWIPC}
	nsUTS = nsKind{"uts", unix.CLONE_NEWUTS}
)

// nsSetup is what happens inside fresh namespaces before they are pinned.
type nsSetup struct {
	kinds    []nsKind
	hostname string            // set when the pod owns its UTS namespace
	sysctls  map[string]string // /proc/sys-relative path → value
}

// pinNamespaces creates the pod's namespaces on a dedicated thread and
// bind-mounts them onto files in dir, returning kind → pin path.
//
// The thread is never unlocked: when the goroutine ends, the Go runtime
// kills a locked thread instead of returning it to the pool, so no other
// goroutine ever runs in the pod's namespaces.
func pinNamespaces(dir string, s nsSetup) (map[string]string, error) {
	if len(s.kinds) == 0 {
		return map[string]string{}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	type result struct {
		pins map[string]string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		pins, err := pinOnThisThread(dir, s)
		done <- result{pins, err}
	}()
	r := <-done
	return r.pins, r.err
}

func pinOnThisThread(dir string, s nsSetup) (map[string]string, error) {
	flags := 0
	for _, k := range s.kinds {
		flags |= k.flag
	}
	if err := unix.Unshare(flags); err != nil {
		return nil, fmt.Errorf("creating the pod's namespaces: %w", err)
	}
	if err := s.configure(); err != nil {
		return nil, err
	}
	tid := unix.Gettid()
	pins := map[string]string{}
	for _, k := range s.kinds {
		pin := filepath.Join(dir, k.name)
		if err := bindNamespace(fmt.Sprintf("/proc/self/task/%d/ns/%s", tid, k.name), pin); err != nil {
			unpin(pins)
			return nil, err
		}
		pins[k.name] = pin
	}
	return pins, nil
}

// configure runs on the thread inside the new namespaces: sysctls under
// /proc/sys resolve against the calling thread's namespaces.
func (s nsSetup) configure() error {
	for _, k := range s.kinds {
		switch k {
		case nsUTS:
			if err := unix.Sethostname([]byte(s.hostname)); err != nil {
				return fmt.Errorf("setting the pod's hostname %q: %w", s.hostname, err)
			}
		case nsNet:
			if err := loopback.Up(); err != nil {
				return fmt.Errorf("bringing up the pod's loopback: %w", err)
			}
		}
	}
	keys := make([]string, 0, len(s.sysctls))
	for k := range s.sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(s.sysctls[k]), 0); err != nil {
			return fmt.Errorf("%w: setting sysctl %s=%s: %v", errInvalidSysctl, strings.ReplaceAll(k, "/", "."), s.sysctls[k], err)
		}
	}
	return nil
}

func bindNamespace(src, pin string) error {
	f, err := os.OpenFile(pin, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("creating the namespace pin %s: %w", pin, err)
	}
	f.Close()
	if err := unix.Mount(src, pin, "", unix.MS_BIND, ""); err != nil {
		os.Remove(pin)
		return fmt.Errorf("pinning %s on %s: %w", src, pin, err)
	}
	return nil
}

func unpin(pins map[string]string) {
	for _, p := range pins {
		unix.Unmount(p, unix.MNT_DETACH)
		os.Remove(p)
	}
}

// inNamespace runs fn on a locked thread that joined the namespace pinned
// at path. If the thread cannot go back to its own namespace it stays
// locked and dies with the goroutine.
func inNamespace(path string, kind nsKind, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/%s", unix.Gettid(), kind.name))
		if err != nil {
			done <- err
			return
		}
		defer own.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), kind.flag); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("joining %s: %w", path, err)
			return
		}
		ferr := fn()
		if unix.Setns(int(own.Fd()), kind.flag) == nil {
			runtime.UnlockOSThread()
		}
		done <- ferr
	}()
	return <-done
}

// isNamespacePin reports whether path is a live bind-mounted namespace (on
// an nsfs file system), not the empty file a lost mount leaves behind.
func isNamespacePin(path string) bool {
	if path == "" {
		return false
	}
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// unmountUnder detaches every mount at or below dir, deepest first, as
// listed by /proc/self/mountinfo (stacked mounts included).
func unmountUnder(dir string) error {
	for range 8 {
		points, err := mountsUnder(dir)
		if err != nil || len(points) == 0 {
			return err
		}
		sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
		for _, p := range points {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmounting %s: %w", p, err)
			}
		}
	}
	return fmt.Errorf("mounts keep reappearing under %s", dir)
}

func mountsUnder(dir string) ([]string, error) {
	points, err := mountinfo.Points()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range points {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	return out, nil
}

// startReaper starts catatonit as PID 1 of a new PID namespace. It runs in
// its own session and is not tied to crib's life: pods outlive restarts.
// crib reaps it while it is crib's child; after a restart, the subreaper
// above crib does.
// reaperEnv marks a pod's reaper with the pod's id and crib's root, so
// that start-up recovery can find a reaper whose pod record never learnt
// its pid (crib killed between starting it and saving the record), and
// never takes another crib's reaper for one of its own.
const reaperEnv = "CRIB_POD_REAPER"

func reaperMark(podID, root string) string { return podID + "@" + root }

func startReaper(catatonit, mark string) (pid int, start uint64, err error) {
	path := catatonit
	if path == "" {
		path = "catatonit"
	}
	if path, err = exec.LookPath(path); err != nil {
		return 0, 0, fmt.Errorf("the PID-namespace reaper catatonit: %w", err)
	}
	cmd := exec.Command(path, "-P")
	cmd.Env = []string{reaperEnv + "=" + mark}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("starting the reaper %s: %w", path, err)
	}
	go reapPodProcess(cmd)
	pid = cmd.Process.Pid
	start, err = procfs.StartTime(pid)
	if err != nil {
		killProcess(pid, 0)
		return 0, 0, fmt.Errorf("reading the reaper's start time: %w", err)
	}
	return pid, start, nil
}

// reapPodProcess reaps cmd, a pod's long-lived process. A plain
// cmd.Wait would hold an OS thread in waitid for the pod's life, and the
// Go runtime keeps every thread it ever made: after 100 pods, 100 idle
// threads, about 40 KiB each (signal stack, thread stack, M), and the
// handoffs of their processors leave more idle threads behind. So the
// wait sleeps in the runtime's poller on a pidfd, which becomes readable
// when the process exits, and holds no thread; cmd.Wait then reaps at
// once. Where pidfds cannot be polled (Linux before 5.10), the goroutine
// locks its thread and never unlocks it, so that the thread exits with
// the wait.
func reapPodProcess(cmd *exec.Cmd) {
	if err := awaitExit(cmd.Process.Pid); err != nil {
		runtime.LockOSThread()
	}
	cmd.Wait()
}

// awaitExit returns once process pid (a child, not yet reaped) has
// exited, without reaping it.
func awaitExit(pid int) error {
	f, err := pidfd.Open(pid)
	if err != nil {
		return err
	}
	defer f.Close()
	return pidfd.Await(context.Background(), f, time.Time{})
}

// killProcess kills pid if it is still the process that started at start
// and waits briefly for it to die.
func killProcess(pid int, start uint64) error {
	if !procfs.AliveSince(pid, start) {
		return nil
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("killing pid %d: %w", pid, err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if !procfs.AliveSince(pid, start) {
			return nil
		}
	}
	return fmt.Errorf("pid %d survived SIGKILL for 5s", pid)
}

// markedReapers lists the live processes carrying reaperEnv, by mark.
func markedReapers() map[string][]int {
	out := map[string][]int{}
	dirs, _ := os.ReadDir("/proc")
	prefix := []byte(reaperEnv + "=")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if id, ok := bytes.CutPrefix(kv, prefix); ok {
				out[string(id)] = append(out[string(id)], pid)
			}
		}
	}
	return out
}
