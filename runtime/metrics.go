package runtime

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/procfs"
	"github.com/crib-dev/crib/runtime/cgroups"
)

// Metrics is one detailed measurement of a running container: Usage plus
// what the kubelet's CRI metrics (cAdvisor's names) ask for. Figures come
// from the container's cgroup where crib has one, and from its processes
// under /proc otherwise; the per-process figures (threads, descriptors,
// sockets, process I/O, the root filesystem) always come from /proc.
//
// A figure nothing on the host can measure is 0, and a limit nothing
// enforces is Unlimited; see the field comments for when that happens.
type Metrics struct {
	Usage

	// CPU split and CFS throttling, from the cgroup (user and system also
	// from /proc; throttling needs the cpu controller, 0 without it).
	CPUUserNs, CPUSystemNs          uint64
	CFSPeriods, CFSThrottledPeriods uint64
	CFSThrottledNs                  uint64

	// Memory detail. Without a memory cgroup, page cache, peak usage,
	// kernel memory, failures and OOM kills cannot be attributed to the
	// container and stay 0; MappedFile and Swap are then summed from the
	// processes' RssFile and VmSwap.
	MemoryCache, MemoryMappedFile, MemorySwap uint64
	MemoryFailcnt, MemoryMaxUsage             uint64
	MemoryKernel, OOMEvents                   uint64

	// Limits as the kernel enforces them (cgroups.Unlimited: none).
	// CPUPeriodUs and CPUShares are 0 without a cpu cgroup.
	CPUPeriodUs, CPUQuotaUs, CPUShares uint64
	MemoryLimit, MemorySwapLimit       uint64
	ThreadsMax                         uint64

	// Per process, summed over the container's processes.
	Threads, FileDescriptors, Sockets uint64
	// ProcessIO is the storage I/O of the container's live processes
	// (/proc/PID/io); unlike the cgroup's, it loses what exited processes
	// did.
	ProcessIO IOCounters

	// Devices is the block I/O the cgroup counted per device; empty
	// without a blkio/io controller or when no I/O reached a device.
	Devices []DeviceIO

	// RootFS is the file system under the container's root (statfs of
	// /proc/PID/root): the writable layer's backing store.
	RootFS FilesystemStats

	StartedAt, LastSeen time.Time
}

// Unlimited marks a limit nothing enforces.
const Unlimited = cgroups.Unlimited

// IOCounters are storage reads and writes: bytes that reached or left the
// storage layer, and read and write operations (for processes, proc(5)'s
// syscr and syscw: the read and write system calls made).
type IOCounters struct {
	ReadBytes, WriteBytes uint64
	Reads, Writes         uint64
}

// DeviceIO is the cgroup's I/O on one block device, by operation name
// (Read, Write, and on cgroup v1 Sync, Async, Discard, Total).
type DeviceIO struct {
	// Device is the device node, "/dev/sda"; "" when sysfs does not name it.
	Device       string
	Major, Minor uint64
	Bytes, Ops   map[string]uint64
}

// FilesystemStats is statfs of one file system.
type FilesystemStats struct {
	LimitBytes, InodesTotal, InodesFree uint64
}

// Where the kernel's views live; tests point a hostFiles at fixtures.
const (
	procRoot = "/proc"
	sysRoot  = "/sys"
)

type hostFiles struct{ proc, sys string }

// Metrics measures the container in detail. A container that is not
// running has no processes: only its cgroup figures (if its cgroup is
// still there) and its times are filled.
func (m *Manager) Metrics(ctx context.Context, id string) (Metrics, error) {
	c, err := m.Status(id)
	if err != nil {
		return Metrics{}, err
	}
	now := time.Now()
	out := Metrics{StartedAt: c.StartedAt, LastSeen: now,
		CPUQuotaUs: Unlimited, MemoryLimit: Unlimited, MemorySwapLimit: Unlimited, ThreadsMax: Unlimited}
	var cg *cgroups.Metrics
	if m.cgroups != nil && c.CgroupsPath != "" {
		if cg, err = m.cgroups.Metrics(c.CgroupsPath); err != nil && c.State == StateRunning {
			m.log.Debug("container cgroup unreadable; using /proc", "container", id, "err", err)
		}
	}
	running := c.State == StateRunning && processAlive(c.Pid)
	var pids []int
	if cg != nil {
		pids = cg.Procs
	}
	if running && len(pids) == 0 {
		pids = containerPids(c)
	}
	host := hostFiles{procRoot, sysRoot}
	procs := host.readProcesses(pids)
	switch {
	case cg != nil:
		out.fromCgroup(cg, now, host)
	case running:
		out.fromProcesses(procs, now)
	default:
		out.Usage = Usage{Timestamp: now, Source: "none"}
	}
	out.Threads, out.FileDescriptors, out.Sockets = procs.threads, procs.fds, procs.sockets
	out.ProcessIO = procs.io
	if running {
		// A layer that cannot be measured (the process just exited)
		// leaves zeros; the rest of the sample stands.
		out.RootFS, _ = host.statfs(filepath.Join(host.proc, strconv.Itoa(c.Pid), "root"))
	}
	return out, nil
}

func (out *Metrics) fromCgroup(cg *cgroups.Metrics, now time.Time, host hostFiles) {
	s := cg.Stats
	out.Usage = Usage{Timestamp: now, Stats: s, Source: "cgroup"}
	out.CPUUserNs, out.CPUSystemNs = cg.CPUUserNs, cg.CPUSystemNs
	out.CFSPeriods, out.CFSThrottledPeriods, out.CFSThrottledNs = cg.CFSPeriods, cg.CFSThrottledPeriods, cg.CFSThrottledNs
	out.MemoryCache, out.MemoryMappedFile, out.MemorySwap = cg.MemoryCache, cg.MemoryMappedFile, cg.MemorySwap
	out.MemoryFailcnt, out.MemoryMaxUsage, out.MemoryKernel = cg.MemoryFailcnt, cg.MemoryMaxUsage, cg.MemoryKernel
	out.OOMEvents = s.OOMKills
	out.CPUPeriodUs, out.CPUQuotaUs, out.CPUShares = cg.CPUPeriodUs, cg.CPUQuotaUs, cg.CPUShares
	out.MemoryLimit, out.MemorySwapLimit, out.ThreadsMax = cg.MemoryLimit, cg.MemorySwapLimit, cg.PidsLimit
	for _, d := range cg.Devices {
		out.Devices = append(out.Devices, DeviceIO{
			Device: host.deviceName(d.Major, d.Minor), Major: d.Major, Minor: d.Minor, Bytes: d.Bytes, Ops: d.Ops,
		})
	}
}

func (out *Metrics) fromProcesses(p processTotals, now time.Time) {
	out.Usage = Usage{Timestamp: now, Stats: cgroups.ProcessStats(p.usage), Source: "proc"}
	out.CPUUserNs, out.CPUSystemNs = p.usage.UserNs, p.usage.SystemNs
	out.MemoryMappedFile, out.MemorySwap = p.rssFile, p.swap
}

// processTotals sums what /proc says about a set of processes.
type processTotals struct {
	usage                 procfs.Usage // the formula pods and Stats use
	rssFile, swap         uint64
	threads, fds, sockets uint64
	io                    IOCounters
}

// readProcesses sums stat, status, io and fd of each process; a process
// that exits meanwhile, or a file crib may not read, counts for nothing.
func (h hostFiles) readProcesses(pids []int) processTotals {
	var t processTotals
	page := uint64(os.Getpagesize())
	for _, pid := range pids {
		dir := filepath.Join(h.proc, strconv.Itoa(pid))
		data, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		st, err := procfs.ParseStat(data)
		if err != nil {
			continue
		}
		t.usage.Add(st, page)
		status := readProcKeyed(filepath.Join(dir, "status"), ":")
		t.rssFile += status["RssFile"] * 1024 // kB
		t.swap += status["VmSwap"] * 1024
		t.threads += status["Threads"]
		io := readProcKeyed(filepath.Join(dir, "io"), ":")
		t.io.ReadBytes += io["read_bytes"]
		t.io.WriteBytes += io["write_bytes"]
		t.io.Reads += io["syscr"]
		t.io.Writes += io["syscw"]
		fds, sockets := countFds(filepath.Join(dir, "fd"))
		t.fds += fds
		t.sockets += sockets
	}
	return t
}

// readProcKeyed parses "Key<sep> value [unit]" lines, keeping the numbers;
// an unreadable file gives an empty map.
func readProcKeyed(path, sep string) map[string]uint64 {
	out := map[string]uint64{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), sep)
		f := strings.Fields(rest)
		if !ok || len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			out[k] = v
		}
	}
	return out
}

// countFds counts a process's open descriptors and, of those, sockets
// (links reading "socket:[inode]").
func countFds(dir string) (fds, sockets uint64) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		fds++
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			sockets++
		}
	}
	return fds, sockets
}

// statfs measures the file system holding path.
func (hostFiles) statfs(path string) (FilesystemStats, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FilesystemStats{}, err
	}
	return FilesystemStats{LimitBytes: st.Blocks * uint64(st.Bsize), InodesTotal: st.Files, InodesFree: st.Ffree}, nil
}

// deviceName names a block device from sysfs's uevent (DEVNAME=sda).
func (h hostFiles) deviceName(major, minor uint64) string {
	path := filepath.Join(h.sys, "dev", "block", strconv.FormatUint(major, 10)+":"+strconv.FormatUint(minor, 10), "uevent")
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok && name != "" {
			return "/dev/" + name
		}
	}
	return ""
}
