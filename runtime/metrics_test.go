package runtime

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/procfs"
	"github.com/crib-dev/crib/runtime/cgroups"
)

// procFixture writes a /proc-like tree: per pid its stat, status and io
// files and an fd directory of symlinks (targets need not exist).
func procFixture(t *testing.T, procs map[int]fixtureProc) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"stat": p.stat, "status": p.status, "io": p.io} {
			if content == "" {
				continue // unreadable to crib, as io is for a foreign process
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for i, target := range p.fds {
			if err := os.Symlink(target, filepath.Join(dir, "fd", strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

type fixtureProc struct {
	stat, status, io string
	fds              []string
}

// statLine is a Linux 6.1 /proc/PID/stat line: comm "(sh)", state S,
// ppid 1, minflt 300, majflt 2, utime 150, stime 50, cutime 10, cstime 5,
// rss 250 pages.
const statLine = "42 (s h) S 1 42 42 0 -1 4194560 300 0 2 0 150 50 10 5 20 0 1 0 1234 10000000 250 18446744073709551615\n"

func TestReadProcesses(t *testing.T) {
	full := fixtureProc{
		stat:   statLine,
		status: "Name:\tsh\nVmHWM:\t    2000 kB\nRssFile:\t     400 kB\nVmSwap:\t       8 kB\nThreads:\t3\n",
		io:     "rchar: 100\nwchar: 200\nsyscr: 7\nsyscw: 9\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n",
		fds:    []string{"/dev/null", "pipe:[123]", "socket:[456]", "socket:[789]", "anon_inode:[eventfd]"},
	}
	page := uint64(os.Getpagesize())
	cases := []struct {
		name  string
		procs map[int]fixtureProc
		pids  []int
		want  processTotals
	}{
		{"one process", map[int]fixtureProc{42: full}, []int{42}, processTotals{
			usage: procfs.Usage{Procs: 1, CPUNs: 2_150_000_000, UserNs: 1_600_000_000, SystemNs: 550_000_000, RSSBytes: 250 * page,
				Faults: 302, MajorFaults: 2},
			rssFile: 400 << 10, swap: 8 << 10, threads: 3, fds: 5, sockets: 2,
			io: IOCounters{ReadBytes: 4096, WriteBytes: 8192, Reads: 7, Writes: 9},
		}},
		// io is readable only with ptrace access; a process whose io is
		// denied still counts for the rest.
		{"io unreadable, one pid gone", map[int]fixtureProc{42: {stat: statLine, status: "Threads:\t1\n"}}, []int{42, 43}, processTotals{
			usage: procfs.Usage{Procs: 1, CPUNs: 2_150_000_000, UserNs: 1_600_000_000, SystemNs: 550_000_000, RSSBytes: 250 * page,
				Faults: 302, MajorFaults: 2},
			threads: 1,
		}},
		{"no processes", nil, nil, processTotals{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := hostFiles{proc: procFixture(t, tc.procs)}
			if got := h.readProcesses(tc.pids); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDeviceName(t *testing.T) {
	sys := t.TempDir()
	dir := filepath.Join(sys, "dev/block/8:0")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "uevent"), []byte("MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n"), 0o644)
	h := hostFiles{sys: sys}
	if got := h.deviceName(8, 0); got != "/dev/sda" {
		t.Errorf("8:0 = %q, want /dev/sda", got)
	}
	if got := h.deviceName(253, 1); got != "" {
		t.Errorf("unknown device named %q", got)
	}
}

// TestFromCgroup checks which cgroup figure lands where, and that block
// devices get their names.
func TestFromCgroup(t *testing.T) {
	sys := t.TempDir()
	os.MkdirAll(filepath.Join(sys, "dev/block/8:0"), 0o755)
	os.WriteFile(filepath.Join(sys, "dev/block/8:0/uevent"), []byte("DEVNAME=sda\n"), 0o644)
	now := time.Unix(1000, 0)
	cg := &cgroups.Metrics{
		Stats:     cgroups.Stats{CPUUsageNs: 9, MemoryUsage: 8, MemoryWorkingSet: 7, MemoryRSS: 6, PageFaults: 5, MajorPageFaults: 4, Pids: 3, OOMKills: 2},
		CPUUserNs: 10, CPUSystemNs: 11, CFSPeriods: 12, CFSThrottledPeriods: 13, CFSThrottledNs: 14,
		CPUPeriodUs: 15, CPUQuotaUs: 16, CPUShares: 17, MemoryCache: 18, MemoryMappedFile: 19, MemorySwap: 20,
		MemoryFailcnt: 21, MemoryMaxUsage: 22, MemoryKernel: 23, MemoryLimit: 24, MemorySwapLimit: 25, PidsLimit: 26,
		Devices: []cgroups.DeviceIO{{Major: 8, Minor: 0, Bytes: map[string]uint64{"Read": 1}, Ops: map[string]uint64{"Read": 2}}},
	}
	var got Metrics
	got.fromCgroup(cg, now, hostFiles{sys: sys})
	want := Metrics{
		Usage:     Usage{Timestamp: now, Stats: cg.Stats, Source: "cgroup"},
		CPUUserNs: 10, CPUSystemNs: 11, CFSPeriods: 12, CFSThrottledPeriods: 13, CFSThrottledNs: 14,
		MemoryCache: 18, MemoryMappedFile: 19, MemorySwap: 20, MemoryFailcnt: 21, MemoryMaxUsage: 22, MemoryKernel: 23, OOMEvents: 2,
		CPUPeriodUs: 15, CPUQuotaUs: 16, CPUShares: 17, MemoryLimit: 24, MemorySwapLimit: 25, ThreadsMax: 26,
		Devices: []DeviceIO{{Device: "/dev/sda", Major: 8, Minor: 0, Bytes: map[string]uint64{"Read": 1}, Ops: map[string]uint64{"Read": 2}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestMetrics measures a real container: with a delegated cgroup (its
// limits must read back as set) and without (figures from /proc).
func TestMetrics(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cgroups bool
		source  string
	}{
		{"proc", false, "proc"},
		{"cgroup", true, "cgroup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cgroups)
			ctx := context.Background()
			cfg := config("metrics", "sh", "-c", "exec 3</dev/null; sleep 1000 & yes >/dev/null")
			// The smallest quota the kernel takes (1 ms a period): yes exceeds
			// it within a period even when a loaded machine gives it little CPU.
			cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 1000, CpuShares: 512, MemoryLimitInBytes: 64 << 20}
			if _, err := e.m.Create(ctx, e.createOptions("metrics", cfg)); err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			if err := e.m.Start(ctx, "metrics"); err != nil {
				t.Fatal(err)
			}
			got := waitForMetrics(t, e.m, "metrics", tc.cgroups)
			t.Logf("metrics: %+v", got)
			if got.Source != tc.source || got.CPUUsageNs == 0 || got.CPUUserNs == 0 || got.Pids != 2 {
				t.Errorf("usage %+v: want source %s, CPU and 2 processes", got.Usage, tc.source)
			}
			// sleep and yes (sh execs its last command): one thread each,
			// each holding fds 0 to 3.
			if got.Threads != 2 || got.FileDescriptors != 8 {
				t.Errorf("threads %d, fds %d", got.Threads, got.FileDescriptors)
			}
			if got.RootFS.LimitBytes == 0 || got.RootFS.InodesTotal == 0 {
				t.Errorf("root fs %+v", got.RootFS)
			}
			if got.StartedAt.Before(before.Add(-time.Second)) || got.LastSeen.Before(got.StartedAt) {
				t.Errorf("started %v, last seen %v", got.StartedAt, got.LastSeen)
			}
			if !tc.cgroups {
				if got.MemoryLimit != Unlimited || got.ThreadsMax != Unlimited || got.CPUQuotaUs != Unlimited {
					t.Errorf("unconfined container has limits: %+v", got)
				}
				return
			}
			if got.CPUPeriodUs != 100000 || got.CPUQuotaUs != 1000 || got.CPUShares != 512 || got.MemoryLimit != 64<<20 {
				t.Errorf("limits: period %d quota %d shares %d memory %d", got.CPUPeriodUs, got.CPUQuotaUs, got.CPUShares, got.MemoryLimit)
			}
			// yes spins far beyond the quota: CFS must have throttled it.
			if got.CFSPeriods == 0 || got.CFSThrottledPeriods == 0 {
				t.Errorf("CFS periods %d, throttled %d", got.CFSPeriods, got.CFSThrottledPeriods)
			}
		})
	}
}

// waitForMetrics samples a running container until its processes have used
// CPU, sh has exec'd its last command (8 fds) and, under a cgroup, CFS has
// throttled it, or until 10 s pass: on a loaded machine a fixed sleep may
// not give the spinner its first period.
func waitForMetrics(t *testing.T, m *Manager, id string, throttled bool) Metrics {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := m.Metrics(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		done := got.CPUUserNs > 0 && got.Pids == 2 && got.FileDescriptors == 8 && (!throttled || got.CFSThrottledPeriods > 0)
		if done || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}
