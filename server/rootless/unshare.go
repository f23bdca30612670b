package rootless

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/errdefs"
)

// Unshare replaces the current process with argv run inside a running
// crib's user, mount, network, IPC and PID namespaces, as uid 0 there — the way a
// rootless kubelet, critest or a debugging shell joins crib's node.
//
// Joining a user namespace needs a single-threaded process, which a Go
// program never is, so the joining is left to nsenter (util-linux, present
// on every Debian).
func Unshare(cfg config.Config, argv []string) error {
	if len(argv) == 0 {
		shell := os.Getenv("SHELL")
		if shell == "" {
			shell = "/bin/sh"
		}
		argv = []string{shell}
	}
	if os.Geteuid() == 0 {
		// Rootful crib lives in the host's namespaces: nothing to join.
		return execve(argv)
	}
	pid, err := runningChildPID(cfg.RunRoot)
	if err != nil {
		return err
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter (util-linux) is needed to join crib's namespaces: %w", err)
	}
	// --wdns resolves the directory inside crib's mount namespace; --wd
	// would open it before joining and leave a working directory that
	// getcwd reports as unreachable.
	wd, _ := os.Getwd()
	args, env, err := enterArgs(nsenter, pid, wd, argv, Handoff{})
	if err != nil {
		return err
	}
	return syscall.Exec(nsenter, args, env)
}

func execve(argv []string) error {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, os.Environ())
}

// runningChildPID finds the process that holds a running crib's
// namespaces.
func runningChildPID(runRoot string) (int, error) {
	h, ok := loadHolder(runRoot)
	if !ok {
		return 0, fmt.Errorf("crib is not running (no live namespace holder recorded in %s): start it with `crib serve`", holderPath(runRoot))
	}
	return h.PID, nil
}

// Guest is what a command re-executed by EnterAsGuest finds inside crib's
// namespaces.
type Guest struct {
	// Config is the outer command's effective configuration: uid 0
	// inside would compute root's defaults.
	Config config.Config
	// Input is the file the outer command passed on; nil when none.
	Input *os.File
}

// IsGuest reports whether this process is a command EnterAsGuest
// re-executed.
func IsGuest() bool {
	h, _ := peekHandoff()
	return h.Guest
}

// TakeGuest reports whether this process is a command EnterAsGuest
// re-executed, and takes what the outer command handed it.
func TakeGuest() (Guest, bool, error) {
	if h, _ := peekHandoff(); !h.Guest {
		return Guest{}, false, nil
	}
	h, err := takeHandoff()
	if err != nil {
		return Guest{}, true, err
	}
	if h.Config == nil {
		return Guest{}, true, errors.New("the outer crib passed no configuration")
	}
	g := Guest{Config: *h.Config}
	if h.InputFD != 0 {
		g.Input = os.NewFile(uintptr(h.InputFD), "input")
	}
	return g, true, nil
}

// EnterAsGuest replaces this process with crib run again with args
// inside the running crib's namespaces (node.go: enterArgs), as a guest
// of the daemon (`crib image`): the copy inside finds cfg and input, an
// open file it inherits (nil: none), through TakeGuest.
func EnterAsGuest(cfg config.Config, args []string, input *os.File) error {
	h, ok := loadHolder(cfg.RunRoot)
	if !ok {
		return fmt.Errorf("%w: crib's namespaces do not exist (crib is not running, and no pod kept them): start crib with `crib serve`, then run this again",
			errdefs.ErrFailedPrecondition)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter (util-linux) is needed to join crib's namespaces: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding crib's own binary: %w", err)
	}
	handoff := Handoff{Guest: true, Config: &cfg}
	if input != nil {
		// Handed across the re-execution open, so that nothing about
		// crib's mount namespace can hide the file.
		if _, err := unix.FcntlInt(input.Fd(), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("passing %s on: %w", input.Name(), err)
		}
		handoff.InputFD = int(input.Fd())
	}
	wd, _ := os.Getwd()
	argv, env, err := enterArgs(nsenter, h.PID, wd, append([]string{exe}, args...), handoff)
	if err != nil {
		return err
	}
	return syscall.Exec(nsenter, argv, env)
}
