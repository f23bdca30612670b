package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/procfs"
)

// Reaper makes crib a child subreaper and reaps the orphans it adopts.
//
// Why: conmon double-forks, so every monitor is an orphan; a killed `runc
// exec` leaves its process to be adopted; and PID 1 on some hosts never
// reaps. With PR_SET_CHILD_SUBREAPER those orphans become crib's children,
// and an unreaped one stays a zombie (and a killed container would never
// look dead).
//
// The race with exec.Cmd.Wait: a blind wait4(-1) would steal the exit
// status of children crib waits for itself. The reaper therefore never
// waits on "any" child. On SIGCHLD it lists crib's children from
// /proc/self/task/*/children and reaps, by pid, only zombies that are
//   - not registered through Start/Run (runtime's own commands), and
//   - have stayed zombies for a grace period, so that a plain
//     exec.Cmd.Wait elsewhere in crib (which reaps its child as soon as it
//     exits) always wins the race for its own child.
//
// Registration happens under a read lock held from before fork until the
// pid is recorded, and a scan holds the write lock, so a child that exits
// instantly cannot be mistaken for an orphan. Orphans are never waited on
// by anyone else, so the grace period only delays their reaping.
type Reaper struct {
	log   *slog.Logger
	grace time.Duration

	starting sync.RWMutex // read: a registered child is being started; write: a scan

	mu    sync.Mutex
	own   map[int]struct{}
	first map[int]time.Time // unregistered zombies → when first seen

	kick chan struct{}
}

// reaperGrace is how long a zombie that crib did not start through the
// reaper is left for its own waiter.
const reaperGrace = time.Second

// StartReaper makes the calling process a child subreaper and reaps orphans
// until ctx ends. The daemon calls it once, early; a nil *Reaper is valid
// everywhere and runs commands without registration.
func StartReaper(ctx context.Context, log *slog.Logger) (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("becoming a child subreaper: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Reaper{
		log:   log,
		grace: reaperGrace,
		own:   map[int]struct{}{},
		first: map[int]time.Time{},
		kick:  make(chan struct{}, 1),
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go r.loop(ctx, sigs)
	return r, nil
}

func (r *Reaper) loop(ctx context.Context, sigs chan os.Signal) {
	defer signal.Stop(sigs)
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
		case <-r.kick:
		case <-timer:
		}
		timer = nil
		if pending := r.scan(); pending {
			timer = time.After(r.grace / 2)
		}
	}
}

// Start starts cmd as a registered child: the reaper leaves it to
// cmd.Wait (call r.Wait, which also unregisters it).
func (r *Reaper) Start(cmd *exec.Cmd) error {
	if r == nil {
		return cmd.Start()
	}
	r.starting.RLock()
	defer r.starting.RUnlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.mu.Lock()
	r.own[cmd.Process.Pid] = struct{}{}
	r.mu.Unlock()
	return nil
}

// Wait waits for a child started with Start and unregisters it.
func (r *Reaper) Wait(cmd *exec.Cmd) error {
	err := cmd.Wait()
	if r != nil {
		r.mu.Lock()
		delete(r.own, cmd.Process.Pid)
		r.mu.Unlock()
	}
	return err
}

// Run is Start then Wait.
func (r *Reaper) Run(cmd *exec.Cmd) error {
	if err := r.Start(cmd); err != nil {
		return err
	}
	return r.Wait(cmd)
}

// Kick asks for a scan now, for a caller that just orphaned processes.
func (r *Reaper) Kick() {
	if r == nil {
		return
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// scan reaps the orphans whose grace has passed and reports whether some
// zombie is still waiting for its grace to end.
func (r *Reaper) scan() (pending bool) {
	r.starting.Lock()
	defer r.starting.Unlock()
	now := time.Now()
	zombies := map[int]bool{}
	for _, pid := range childPids() {
		if processState(pid) != 'Z' {
			continue
		}
		zombies[pid] = true
		r.mu.Lock()
		_, own := r.own[pid]
		seen, ok := r.first[pid]
		if !ok && !own {
			r.first[pid] = now
			seen = now
		}
		r.mu.Unlock()
		if own {
			continue
		}
		if now.Sub(seen) < r.grace {
			pending = true
			continue
		}
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
			r.log.Debug("reaped an orphan", "pid", pid, "status", ws.ExitStatus())
		}
	}
	r.mu.Lock()
	for pid := range r.first {
		if !zombies[pid] {
			delete(r.first, pid)
		}
	}
	r.mu.Unlock()
	return pending
}

// childPids lists the calling process's children: the kernel keeps one
// list per thread, and an adopted orphan may land on any thread.
func childPids() []int {
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var pids []int
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// processState is the one-letter state of /proc/PID/stat, or 0 when the
// process does not exist.
func processState(pid int) byte {
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return 0
	}
	return st.State
}

// processAlive reports whether pid is a process that has not exited
// (a zombie has).
func processAlive(pid int) bool { return procfs.Alive(pid) }

// WaitAdopted waits for pid, an orphan crib adopted and wants the exit
// status of (a command `runtime exec --detach` started: when the runtime
// exits its command passes to crib, the nearest subreaper), and keeps
// scans away from it meanwhile. A pid that is not crib's child is
// unix.ECHILD.
func (r *Reaper) WaitAdopted(pid int) (unix.WaitStatus, error) {
	if r != nil {
		r.mu.Lock()
		r.own[pid] = struct{}{}
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			delete(r.own, pid)
			r.mu.Unlock()
		}()
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		return ws, err
	}
}
