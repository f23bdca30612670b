package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procSet names a runtime's resident processes: daemons are what it runs
// with no pod (crib: parent, daemon, namespace holder, slirp4netns;
// containerd: containerd), roots are the processes whose descendants are
// the runtime's per-pod helpers (monitors, shims, pause, reapers).
type procSet struct {
	main    int // the process that serves CRI
	daemons []int
	roots   []int
}

// memory is a sum of RSS and PSS in KiB over some processes.
type memory struct {
	RSSKiB, PSSKiB int
	// PSSAnonKiB is the anonymous part of PSS (heap, stacks, runtime);
	// the rest is mapped files, mostly the binary's own pages.
	PSSAnonKiB int
	Procs      int
}

func (m *memory) add(o memory) {
	m.RSSKiB += o.RSSKiB
	m.PSSKiB += o.PSSKiB
	m.PSSAnonKiB += o.PSSAnonKiB
	m.Procs += o.Procs
}

// smapsRollup reads RSS and PSS of one process; a vanished one counts zero.
func smapsRollup(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if os.IsNotExist(err) || (err == nil && len(data) == 0) {
		return memory{}, nil
	}
	if err != nil {
		return memory{}, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	m := memory{Procs: 1}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "Rss:":
			m.RSSKiB = v
		case "Pss:":
			m.PSSKiB = v
		case "Pss_Anon:":
			m.PSSAnonKiB = v
		}
	}
	return m, nil
}

func sumMemory(pids []int) (memory, error) {
	var total memory
	for _, p := range pids {
		m, err := smapsRollup(p)
		if err != nil {
			return total, err
		}
		total.add(m)
	}
	return total, nil
}

// children lists the children of pid from every thread's children file.
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

func descendants(roots []int) []int {
	seen := map[int]bool{}
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children(p) {
			if !seen[c] {
				seen[c] = true
				queue = append(queue, c)
			}
		}
	}
	out := make([]int, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// isWorkload tells a benchmark container's processes (its shell and its
// sleep) from a runtime's helpers by their command lines.
func isWorkload(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(data, []byte(workloadMarker)) || bytes.Equal(data, []byte("sleep\x0086399\x00"))
}

// helpers lists the runtime's per-pod helper processes: descendants of its
// roots that are neither its daemons nor container workloads.
func (ps procSet) helpers() []int {
	var out []int
	for _, p := range descendants(ps.roots) {
		if slices.Contains(ps.daemons, p) || isWorkload(p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func comm(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(data))
}

// commCounts summarises a process list as "conmon×10 catatonit×10".
func commCounts(pids []int) string {
	counts := map[string]int{}
	for _, p := range pids {
		counts[comm(p)]++
	}
	var names []string
	for n := range counts {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s×%d", n, counts[n]))
	}
	return strings.Join(parts, " ")
}

// binaryShared finds processes outside pids that run the same executable
// file as main. PSS divides a file page among the processes that map it,
// so such a process (a `crib unshare` guest, say) would take a share of
// the daemons' binary pages and make their PSS look smaller than what
// they cost. (Shared libraries and the runtime's other helpers, such as
// slirp4netns, are shared with other users of the machine as they would
// be anywhere.)
func binaryShared(main int, pids []int) ([]int, error) {
	file, ok := exeID(main)
	if !ok {
		return nil, fmt.Errorf("the executable of pid %d is gone", main)
	}
	all, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, dir := range all {
		p, err := strconv.Atoi(filepath.Base(dir))
		if err != nil || slices.Contains(pids, p) {
			continue
		}
		if id, ok := exeID(p); ok && id == file {
			out = append(out, p)
		}
	}
	return out, nil
}

// exeID is the device and inode of a process's executable; false for a
// kernel thread or a process gone.
func exeID(pid int) ([2]uint64, bool) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st); err != nil {
		return [2]uint64{}, false
	}
	return [2]uint64{st.Dev, st.Ino}, true
}
