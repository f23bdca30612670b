package cgroups

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRealV1PodCgroup runs as root on a cgroup v1 host: it delegates a
// test parent (as scripts/cgroup-delegate.sh would), creates a pod cgroup
// with limits, puts a process in it, reads the stats and removes it all.
func TestRealV1PodCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup parent")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.usage_in_bytes"); err != nil {
		t.Skip("no cgroup v1 memory hierarchy")
	}
	own, err := parseProcCgroup("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	parent := fmt.Sprintf("crib-cgroups-test-%d", os.Getpid())
	var made []string
	t.Cleanup(func() {
		for _, d := range made {
			os.Remove(d)
		}
	})
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "cpuset"} {
		dir := filepath.Join("/sys/fs/cgroup", c, own[c], parent)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, dir)
		if c == "cpuset" {
			if err := inheritCpuset(dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	m, reason, err := Detect(DetectOptions{Manager: "cgroupfs", Parent: parent})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(reason)
	res := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 256, CpuQuota: 20000, CpuPeriod: 100000}
	path, err := m.CreatePod("real", "kubepods", res, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.RemovePod(path); err != nil {
			t.Error(err)
		}
		for _, d := range made {
			if entries := subdirNames(d); len(entries) > 0 {
				t.Errorf("left in %s: %v", d, entries)
			}
		}
	}()
	v := m.(*v1)
	if got := readTrim(t, filepath.Join(v.dir("memory", path), "memory.limit_in_bytes")); got != strconv.Itoa(65<<20) {
		t.Errorf("memory limit %s", got)
	}
	if got := readTrim(t, filepath.Join(v.dir("cpu", path), "cpu.cfs_quota_us")); got != "20000" {
		t.Errorf("cfs quota %s", got)
	}
	if got := readTrim(t, filepath.Join(v.dir("cpuset", path), "cpuset.cpus")); got == "" {
		t.Error("cpuset.cpus not inherited")
	}

	// A process in the pod cgroup (every controller), as runc would put one.
	// It waits on stdin until it is inside, then burns some CPU and memory.
	sleep := exec.Command("sh", "-c", `read go; i=0; s=x; while [ $i -lt 3000 ]; do i=$((i+1)); s="$s$i"; done; exec sleep 30`)
	stdin, _ := sleep.StdinPipe()
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	for _, c := range v.Controllers() {
		if err := os.WriteFile(filepath.Join(v.dir(c, path), "cgroup.procs"), []byte(strconv.Itoa(sleep.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stdin.Write([]byte("go\n"))
	var s *Stats
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s, err = m.Stats(path); err != nil {
			t.Fatal(err)
		}
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", sleep.Process.Pid)); string(comm) == "sleep\n" {
			break // the loop is done
		}
	}
	if s.Pids != 1 || s.CPUUsageNs == 0 || s.MemoryUsage == 0 {
		t.Errorf("stats %+v", s)
	}
	// The detail reads back the limits set above and the one process.
	md, err := m.Metrics(path)
	if err != nil {
		t.Fatal(err)
	}
	if md.MemoryLimit != 65<<20 || md.CPUQuotaUs != 20000 || md.CPUPeriodUs == 0 || md.CPUShares == 0 ||
		md.CPUUserNs+md.CPUSystemNs == 0 || md.MemoryMaxUsage == 0 || len(md.Procs) != 1 || md.Procs[0] != sleep.Process.Pid {
		t.Errorf("metrics %+v", md)
	}
	// Move it back out so the pod cgroup can go.
	sleep.Process.Kill()
	sleep.Wait()
}

func subdirNames(dir string) []string {
	var out []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
