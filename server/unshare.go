package server

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/crib-dev/crib/internal/config"
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
	node := hasNodeNamespaces(pid)
	args := append(append([]string{nsenter}, joinArgs(pid, node)...), "--wdns="+wd, "--")
	env := os.Environ()
	if node {
		// nsenter cannot hand over its own child (--pid forks, and relays
		// no signal): crib's node stage joins the PID namespace and runs
		// argv (node.go).
		nsFD, err := openPIDNamespace(pid)
		if err != nil {
			return err
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		args = append(args, exe)
		env = withEnv(env, nodeStageEnv, "exec:"+strconv.Itoa(nsFD))
	}
	return syscall.Exec(nsenter, append(args, argv...), env)
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
