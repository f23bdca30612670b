package rootless

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The host-side parent runs for as long as crib does, and does little:
// it dials for the daemon, forwards host ports and relays signals. Run by
// crib's own binary it maps some 20 MB of it (every package's start-up
// touches its pages) and holds the heap crib's package inits allocate.
// So `crib serve` does the part of the parent that needs crib (the
// configuration, the host checks, the lock, PrepareParent), then
// executes the small host-side program (cmd/crib-hostside, this package
// and a few small ones), which runs RunParent in the same process: the
// same pid for systemd, the lock and the child's parent check, with the
// lock, the activated socket and the holder's processes inherited.

// HostSideProgram is the host-side program's file name; crib looks for it
// beside its own binary.
const HostSideProgram = "crib-hostside"

// FindHostSide returns the host-side program installed beside the crib
// binary daemon, or an error saying what is missing.
func FindHostSide(daemon string) (string, error) {
	path := filepath.Join(filepath.Dir(daemon), HostSideProgram)
	st, err := os.Stat(path)
	if err != nil {
		return path, fmt.Errorf("%s is missing beside %s: install both (make install, or make build for bin/)", HostSideProgram, daemon)
	}
	if !st.Mode().IsRegular() || unix.Access(path, unix.X_OK) != nil {
		return path, fmt.Errorf("%s is not an executable file", path)
	}
	return path, nil
}

// ParentHandoff is what crib hands the host-side program besides its
// configuration and activated socket: the rest of ParentOptions, and
// what it holds for the process.
type ParentHandoff struct {
	// Daemon is the crib binary the child runs.
	Daemon string `json:"daemon"`
	// Args are crib serve's arguments, for the child.
	Args []string `json:"args"`
	// Holder is crib's namespaces, as PrepareParent found or made them.
	Holder Holder `json:"holder"`
	// LockFDs are the instance lock's descriptors, held until exit.
	LockFDs []int `json:"lockFds,omitempty"`
	// NotifySocket is systemd's notification socket ("": none).
	NotifySocket string `json:"notifySocket,omitempty"`
	// Version is the version of the crib that executed the program.
	Version string `json:"version"`
}

// ExecHostSide replaces this process with the host-side program at path,
// which runs RunParent with o (prepared). It returns only when the
// execution failed, with every descriptor as it was, so that the caller
// can run RunParent itself.
func ExecHostSide(path string, o ParentOptions, p ParentHandoff) error {
	if o.Holder == nil {
		return errors.New("internal error: the host-side parent needs crib's namespaces (PrepareParent)")
	}
	p.Holder = *o.Holder
	p.Args = o.Args
	if p.Daemon == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding crib's own binary: %w", err)
		}
		p.Daemon = exe
	}
	h := Handoff{Config: &o.Config, Parent: &p}
	inherit := append([]int(nil), p.LockFDs...)
	if o.Activated != nil {
		h.ListenFD = int(o.Activated.Fd())
		inherit = append(inherit, h.ListenFD)
	}
	env, err := h.environ(os.Environ())
	if err != nil {
		return err
	}
	for _, fd := range inherit {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			closeOnExec(inherit)
			return fmt.Errorf("passing descriptor %d on: %w", fd, err)
		}
	}
	err = unix.Exec(path, append([]string{HostSideProgram}, o.Args...), env)
	closeOnExec(inherit)
	return fmt.Errorf("executing %s: %w", path, err)
}

func closeOnExec(fds []int) {
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
}

// HostSideStart is the host-side program's start: ParentOptions as crib
// prepared them (without Logger, Ready and Stopping, which the program
// makes) and the rest of the handoff.
type HostSideStart struct {
	Options ParentOptions
	Handoff ParentHandoff
}

// TakeParentHandoff reads what crib handed the host-side program. The
// inherited descriptors are closed on the next exec again, so that no
// process the parent starts holds crib's lock; the holder's processes,
// when crib started them, are reaped by this program, their parent now.
func TakeParentHandoff() (HostSideStart, error) {
	h, err := takeHandoff()
	if err != nil {
		return HostSideStart{}, err
	}
	if h.Parent == nil || h.Config == nil {
		return HostSideStart{}, fmt.Errorf("%s is the host-side part of `crib serve`, which executes it; run crib serve", HostSideProgram)
	}
	p := *h.Parent
	closeOnExec(p.LockFDs)
	o := ParentOptions{Config: *h.Config, Args: p.Args, Holder: &p.Holder, Daemon: p.Daemon}
	if h.ListenFD != 0 {
		unix.CloseOnExec(h.ListenFD)
		o.Activated = os.NewFile(uintptr(h.ListenFD), "crib.sock")
	}
	for _, pid := range []int{p.Holder.PID, p.Holder.HelperPID} {
		if pid > 0 {
			// ECHILD at once when crib did not start it.
			go unix.Wait4(pid, nil, 0, nil)
		}
	}
	return HostSideStart{Options: o, Handoff: p}, nil
}
