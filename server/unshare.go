package server

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/crib-dev/crib/internal/config"
)

// Unshare replaces the current process with argv run inside a running
// crib's user, mount and network namespaces, as uid 0 there — the way a
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
	args := []string{nsenter, "--target", strconv.Itoa(pid), "--user", "--mount", "--net", "--wdns=" + wd, "--"}
	return syscall.Exec(nsenter, append(args, argv...), os.Environ())
}

func execve(argv []string) error {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, argv, os.Environ())
}

// runningChildPID reads the pid the parent recorded and checks it is still
// a live process in another user namespace than ours.
func runningChildPID(runRoot string) (int, error) {
	path := filepath.Join(runRoot, childPIDFileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("crib is not running (no %s): start it with `crib serve`", path)
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return 0, fmt.Errorf("crib is not running (pid %d from %s is gone)", pid, path)
	}
	ours, _ := os.Readlink("/proc/self/ns/user")
	if theirs == ours {
		return 0, fmt.Errorf("pid %d from %s is not crib's namespaced child", pid, path)
	}
	return pid, nil
}
