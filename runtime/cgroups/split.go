package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Names of the two children SplitDelegated makes in a delegated cgroup.
const (
	// LeafDir holds crib's own processes (daemon, holder, outbound helper).
	LeafDir = "crib"
	// PodsDir is the sibling under which pod and container cgroups go.
	PodsDir = "pods"
)

// SplitOptions says how to split a delegated cgroup v2 directory.
type SplitOptions struct {
	// Dir is the delegated cgroup, an absolute directory in the cgroup2
	// mount (e.g. /sys/fs/cgroup/user.slice/…/crib.scope).
	Dir string
	// MoveOnly moves the processes into the leaf but makes no pods/
	// sibling and enables no controller: a systemd service before
	// systemd 254 must keep its own cgroup free of enabled controllers,
	// or systemd cannot start the next main process there on restart.
	MoveOnly bool
	// Move puts one process into a cgroup directory; nil writes the pid
	// to its cgroup.procs (the kernel's way). Tests on a fake tree set it.
	Move func(pid int, dir string) error
}

// SplitResult is what SplitDelegated did.
type SplitResult struct {
	Leaf        string   // absolute directory now holding crib's processes
	Pods        string   // absolute directory for pod cgroups; "" with MoveOnly
	Controllers []string // controllers enabled for Pods' subtree
	Moved       []int    // pids moved into Leaf
}

// splitRounds bounds the moving: a process forked while crib moves the
// others lands in the source again and is picked up by the next round.
const splitRounds = 8

// SplitDelegated works around cgroup v2's "no internal processes" rule for
// a delegated cgroup that holds crib's own processes: a cgroup with
// processes cannot enable controllers for its children. It makes a leaf
// (LeafDir) and moves every process of Dir into it, makes the PodsDir
// sibling and enables the delegated controllers crib uses (those of
// v2Wanted listed in Dir's cgroup.controllers) in Dir's subtree_control.
// It is idempotent: a restarted crib finds both children and reuses them.
func SplitDelegated(o SplitOptions) (SplitResult, error) {
	if o.Move == nil {
		o.Move = moveProcess
	}
	res := SplitResult{Leaf: filepath.Join(o.Dir, LeafDir)}
	if err := mkdirCgroup(res.Leaf); err != nil {
		return res, err
	}
	moved, err := drainProcesses(o.Dir, res.Leaf, o.Move)
	res.Moved = moved
	if err != nil {
		return res, err
	}
	if o.MoveOnly {
		return res, nil
	}
	res.Pods = filepath.Join(o.Dir, PodsDir)
	if err := mkdirCgroup(res.Pods); err != nil {
		return res, err
	}
	ctrls, err := enableDelegated(o.Dir)
	res.Controllers = ctrls
	return res, err
}

// drainProcesses moves every process listed in from/cgroup.procs into to,
// until none is left.
func drainProcesses(from, to string, move func(int, string) error) ([]int, error) {
	var moved []int
	for range splitRounds {
		pids, err := readPids(filepath.Join(from, "cgroup.procs"))
		if err != nil {
			return moved, err
		}
		if len(pids) == 0 {
			return moved, nil
		}
		for _, pid := range pids {
			err := move(pid, to)
			if errors.Is(err, syscall.ESRCH) {
				continue // exited meanwhile
			}
			if err != nil {
				return moved, fmt.Errorf("moving process %d into %s: %w", pid, to, err)
			}
			moved = append(moved, pid)
		}
	}
	return moved, fmt.Errorf("%s still holds processes after %d rounds of moving them to %s", from, splitRounds, to)
}

// enableDelegated enables, for dir's children, the controllers crib wants
// that dir offers, and returns them sorted.
func enableDelegated(dir string) ([]string, error) {
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("reading the controllers of %s: %w", dir, err)
	}
	var ctrls []string
	for _, c := range strings.Fields(string(avail)) {
		if slices.Contains(v2Wanted, c) {
			ctrls = append(ctrls, c)
		}
	}
	slices.Sort(ctrls)
	if len(ctrls) == 0 {
		return nil, nil
	}
	plus := make([]string, len(ctrls))
	for i, c := range ctrls {
		plus[i] = "+" + c
	}
	return ctrls, writeFile(dir, "cgroup.subtree_control", strings.Join(plus, " "))
}

func mkdirCgroup(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("making cgroup %s: %w", dir, err)
	}
	return nil
}

func moveProcess(pid int, dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

func readPids(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// OwnV2Path is the cgroup v2 path ("/user.slice/…") of the process whose
// /proc/PID/cgroup is at procCgroup, or "" on a host whose controllers are
// on v1 (hybrid or legacy).
func OwnV2Path(root, procCgroup string) (string, error) {
	if root == "" {
		root = "/sys/fs/cgroup"
	}
	if !isUnified(root) {
		return "", nil
	}
	own, err := parseProcCgroup(procCgroup)
	if err != nil {
		return "", err
	}
	return own[""], nil
}
