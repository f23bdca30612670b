package cgroups

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The split is tested on a fake cgroupfs tree in a temporary directory:
// this machine is a cgroup v1 hybrid without systemd, so it has no
// delegated v2 cgroup to split (the UML lane tests the real one). The
// fake's move does what the kernel does on a write to cgroup.procs: the
// pid leaves its old cgroup's cgroup.procs and joins the new one's.

type fakeMover struct {
	t       *testing.T
	base    string
	forkOn  int // when this pid is moved, a new pid 999 appears in base
	exited  int // this pid is gone: ESRCH
	forked  bool
	movedTo map[int]string
}

func (f *fakeMover) move(pid int, dir string) error {
	if pid == f.exited {
		return &os.PathError{Op: "write", Path: dir, Err: syscall.ESRCH}
	}
	src := filepath.Join(f.base, "cgroup.procs")
	pids, _ := readPids(src)
	pids = slices.DeleteFunc(pids, func(p int) bool { return p == pid })
	if pid == f.forkOn && !f.forked {
		f.forked = true
		pids = append(pids, 999)
	}
	writePids(f.t, src, pids)
	dst := filepath.Join(dir, "cgroup.procs")
	have, _ := readPids(dst)
	writePids(f.t, dst, append(have, pid))
	f.movedTo[pid] = dir
	return nil
}

func writePids(t *testing.T, path string, pids []int) {
	t.Helper()
	var b strings.Builder
	for _, p := range pids {
		b.WriteString(strconv.Itoa(p) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSplitDelegated(t *testing.T) {
	cases := []struct {
		name      string
		procs     string
		ctrls     string
		moveOnly  bool
		forkOn    int
		exited    int
		wantMoved []int
		wantCtrl  []string
		wantSub   string
	}{
		{"crib's processes move to the leaf, delegated controllers enabled",
			"100\n200\n", "cpu memory pids", false, 0, 0, []int{100, 200}, []string{"cpu", "memory", "pids"}, "+cpu +memory +pids"},
		{"only wanted controllers are enabled", "100\n", "cpu io memory pids hugetlb rdma", false, 0, 0,
			[]int{100}, []string{"cpu", "io", "memory", "pids"}, "+cpu +io +memory +pids"},
		{"a process forked during the move is moved too", "100\n200\n", "memory", false, 100, 0,
			[]int{100, 200, 999}, []string{"memory"}, "+memory"},
		{"a process that exited is skipped", "100\n200\n", "memory", false, 0, 200,
			[]int{100}, []string{"memory"}, "+memory"},
		{"a service is only moved into its leaf", "100\n", "cpu memory pids", true, 0, 0, []int{100}, nil, ""},
		{"no controller delegated", "100\n", "", false, 0, 0, []int{100}, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := tree(t, map[string]string{
				"cgroup.procs": c.procs, "cgroup.controllers": c.ctrls + "\n", "cgroup.subtree_control": "\n",
			})
			f := &fakeMover{t: t, base: base, forkOn: c.forkOn, exited: c.exited, movedTo: map[int]string{}}
			res, err := SplitDelegated(SplitOptions{Dir: base, MoveOnly: c.moveOnly, Move: f.moveDroppingExited(base)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Moved, c.wantMoved) {
				t.Errorf("moved %v, want %v", res.Moved, c.wantMoved)
			}
			for _, pid := range c.wantMoved {
				if f.movedTo[pid] != filepath.Join(base, LeafDir) {
					t.Errorf("pid %d went to %q, want the leaf", pid, f.movedTo[pid])
				}
			}
			if left, _ := readPids(filepath.Join(base, "cgroup.procs")); len(left) != 0 {
				t.Errorf("base still holds %v", left)
			}
			if !slices.Equal(res.Controllers, c.wantCtrl) {
				t.Errorf("controllers %v, want %v", res.Controllers, c.wantCtrl)
			}
			sub, _ := os.ReadFile(filepath.Join(base, "cgroup.subtree_control"))
			if strings.TrimSpace(string(sub)) != c.wantSub {
				t.Errorf("subtree_control %q, want %q", sub, c.wantSub)
			}
			_, podsErr := os.Stat(filepath.Join(base, PodsDir))
			if c.moveOnly != os.IsNotExist(podsErr) {
				t.Errorf("moveOnly %v but pods dir stat: %v", c.moveOnly, podsErr)
			}
			if !c.moveOnly && res.Pods != filepath.Join(base, PodsDir) {
				t.Errorf("pods %q", res.Pods)
			}
		})
	}
}

// moveDroppingExited is the fake's move, where an exited pid also
// vanishes from the source (as from the kernel's cgroup.procs).
func (f *fakeMover) moveDroppingExited(base string) func(int, string) error {
	return func(pid int, dir string) error {
		err := f.move(pid, dir)
		if pid == f.exited {
			src := filepath.Join(base, "cgroup.procs")
			pids, _ := readPids(src)
			writePids(f.t, src, slices.DeleteFunc(pids, func(p int) bool { return p == pid }))
		}
		return err
	}
}

// A restarted crib finds the leaf and pods already there, with pods in
// them: the split reuses both and moves only the new processes.
func TestSplitDelegatedRestart(t *testing.T) {
	base := tree(t, map[string]string{
		"cgroup.procs": "300\n", "cgroup.controllers": "memory pids\n", "cgroup.subtree_control": "memory pids\n",
		"crib/cgroup.procs": "100\n", "pods/crib-pod-a/cgroup.procs": "\n",
	})
	f := &fakeMover{t: t, base: base, movedTo: map[int]string{}}
	res, err := SplitDelegated(SplitOptions{Dir: base, Move: f.move})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Moved, []int{300}) {
		t.Errorf("moved %v", res.Moved)
	}
	leaf, _ := readPids(filepath.Join(base, "crib", "cgroup.procs"))
	if !slices.Equal(leaf, []int{100, 300}) {
		t.Errorf("leaf holds %v", leaf)
	}
	if _, err := os.Stat(filepath.Join(base, "pods", "crib-pod-a")); err != nil {
		t.Errorf("existing pod cgroup lost: %v", err)
	}
}

// A process that keeps forking into the base is not chased forever.
func TestSplitDelegatedGivesUp(t *testing.T) {
	base := tree(t, map[string]string{"cgroup.procs": "1\n", "cgroup.controllers": "memory\n"})
	n := 1
	move := func(pid int, dir string) error {
		n++
		writePids(t, filepath.Join(base, "cgroup.procs"), []int{n})
		return nil
	}
	if _, err := SplitDelegated(SplitOptions{Dir: base, Move: move}); err == nil || !strings.Contains(err.Error(), "still holds processes") {
		t.Fatalf("err = %v", err)
	}
}

func TestOwnV2Path(t *testing.T) {
	v2 := tree(t, map[string]string{"cgroup.controllers": "cpu memory\n", "self": "0::/user.slice/u/app.slice/crib.service\n"})
	if p, err := OwnV2Path(v2, filepath.Join(v2, "self")); err != nil || p != "/user.slice/u/app.slice/crib.service" {
		t.Errorf("v2: %q %v", p, err)
	}
	hybrid := tree(t, map[string]string{"unified/cgroup.controllers": "\n", "self": hybridSelf})
	if p, err := OwnV2Path(hybrid, filepath.Join(hybrid, "self")); err != nil || p != "" {
		t.Errorf("hybrid: %q %v", p, err)
	}
}
