package cgroups

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Unlimited is what Metrics reports for a limit the kernel shows as
// "max" (cgroup v2) or -1 (a v1 CFS quota): the value cAdvisor keeps
// for "no limit". A v1 memory limit is reported as the kernel writes it
// (a page-rounded number near 2^63), as cAdvisor does too.
const Unlimited = math.MaxUint64

// Metrics is the detailed reading of one cgroup, beyond Stats: the
// cAdvisor-style figures the kubelet's CRI metrics ask for. Every field
// is read from a cgroup file; a file the kernel or the delegation does
// not provide leaves its field 0 (or, for a limit, Unlimited where the
// absence means no limit applies), never an estimate.
type Metrics struct {
	Stats

	// CPU, in nanoseconds and CFS periods.
	CPUUserNs, CPUSystemNs             uint64
	CFSPeriods, CFSThrottledPeriods    uint64
	CFSThrottledNs                     uint64
	CPUPeriodUs, CPUQuotaUs, CPUShares uint64
	MemoryCache, MemoryMappedFile      uint64
	MemorySwap, MemoryFailcnt          uint64
	MemoryMaxUsage, MemoryKernel       uint64
	MemoryLimit, MemorySwapLimit       uint64
	PidsLimit                          uint64
	// Procs are the processes in the cgroup, as cgroup.procs lists them.
	Procs []int
	// Devices is the block I/O per device, in the order the kernel lists it.
	Devices []DeviceIO
}

// DeviceIO is one block device's I/O by a cgroup. Bytes and Ops are keyed
// by operation, as the kernel names them: v1 gives Read, Write, Sync,
// Async, Discard and Total; v2 gives Read, Write and Discard.
type DeviceIO struct {
	Major, Minor uint64
	Bytes, Ops   map[string]uint64
}

// Metrics reads a v1 cgroup's detail from each delegated hierarchy.
func (m *v1) Metrics(path string) (*Metrics, error) {
	st, err := m.Stats(path)
	if err != nil {
		return nil, err
	}
	out := &Metrics{Stats: *st, MemoryLimit: Unlimited, MemorySwapLimit: Unlimited, PidsLimit: Unlimited, CPUQuotaUs: Unlimited}
	if m.has("cpuacct") {
		readV1CPUAcct(m.dir("cpuacct", path), out)
	}
	if m.has("cpu") {
		readV1CPU(m.dir("cpu", path), out)
	}
	if m.has("memory") {
		readV1Memory(m.dir("memory", path), out)
	}
	if m.has("pids") {
		dir := m.dir("pids", path)
		if v, err := readLimit(filepath.Join(dir, "pids.max")); err == nil {
			out.PidsLimit = v
		}
	}
	if m.has("blkio") {
		out.Devices = readV1Blkio(m.dir("blkio", path))
	}
	out.Procs = m.procs(path)
	return out, nil
}

func (m *v1) has(c string) bool { _, ok := m.bases[c]; return ok }

// procs lists the cgroup's processes from the first delegated hierarchy
// that has them: every hierarchy runc joins holds the same ones.
func (m *v1) procs(path string) []int {
	for _, c := range []string{"pids", "memory", "cpu", "cpuacct"} {
		if !m.has(c) {
			continue
		}
		if p, err := readProcs(filepath.Join(m.dir(c, path), "cgroup.procs")); err == nil {
			return p
		}
	}
	return nil
}

// readV1CPUAcct prefers the nanosecond split (cpuacct.usage_user/_sys)
// and falls back to cpuacct.stat, which counts USER_HZ ticks.
func readV1CPUAcct(dir string, out *Metrics) {
	u, errU := readUint(filepath.Join(dir, "cpuacct.usage_user"))
	s, errS := readUint(filepath.Join(dir, "cpuacct.usage_sys"))
	if errU == nil && errS == nil {
		out.CPUUserNs, out.CPUSystemNs = u, s
		return
	}
	if st, err := readKeyed(filepath.Join(dir, "cpuacct.stat")); err == nil {
		out.CPUUserNs = st["user"] * nsPerTick
		out.CPUSystemNs = st["system"] * nsPerTick
	}
}

// nsPerTick converts USER_HZ ticks, 100 a second on every architecture
// Linux supports for this build, to nanoseconds.
const nsPerTick = 1e9 / 100

func readV1CPU(dir string, out *Metrics) {
	if st, err := readKeyed(filepath.Join(dir, "cpu.stat")); err == nil {
		out.CFSPeriods = st["nr_periods"]
		out.CFSThrottledPeriods = st["nr_throttled"]
		out.CFSThrottledNs = st["throttled_time"]
	}
	if v, err := readUint(filepath.Join(dir, "cpu.cfs_period_us")); err == nil {
		out.CPUPeriodUs = v
	}
	if v, err := readLimit(filepath.Join(dir, "cpu.cfs_quota_us")); err == nil {
		out.CPUQuotaUs = v
	}
	if v, err := readUint(filepath.Join(dir, "cpu.shares")); err == nil {
		out.CPUShares = v
	}
}

func readV1Memory(dir string, out *Metrics) {
	st, _ := readKeyed(filepath.Join(dir, "memory.stat"))
	out.MemoryCache = st["total_cache"]
	out.MemoryMappedFile = st["total_mapped_file"]
	// total_swap exists only with swap accounting; without it nothing
	// was counted and 0 is the kernel's answer.
	out.MemorySwap = st["total_swap"]
	for _, f := range []struct {
		name string
		dst  *uint64
	}{
		{"memory.failcnt", &out.MemoryFailcnt},
		{"memory.max_usage_in_bytes", &out.MemoryMaxUsage},
		// Absent when the kernel runs with cgroup.memory=nokmem.
		{"memory.kmem.usage_in_bytes", &out.MemoryKernel},
		{"memory.limit_in_bytes", &out.MemoryLimit},
		// Absent without swap accounting: then no swap limit applies.
		{"memory.memsw.limit_in_bytes", &out.MemorySwapLimit},
	} {
		if v, err := readUint(filepath.Join(dir, f.name)); err == nil {
			*f.dst = v
		}
	}
}

// readV1Blkio merges the throttle layer's byte and operation counts; the
// throttle layer sees every bio whatever the I/O scheduler.
func readV1Blkio(dir string) []DeviceIO {
	var devs []DeviceIO
	index := map[[2]uint64]int{}
	add := func(file string, pick func(*DeviceIO) map[string]uint64) {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue // the closing "Total N" line, or blank
			}
			maj, min, ok := parseDevice(f[0])
			v, err := strconv.ParseUint(f[2], 10, 64)
			if !ok || err != nil {
				continue
			}
			i, seen := index[[2]uint64{maj, min}]
			if !seen {
				i = len(devs)
				index[[2]uint64{maj, min}] = i
				devs = append(devs, DeviceIO{Major: maj, Minor: min, Bytes: map[string]uint64{}, Ops: map[string]uint64{}})
			}
			pick(&devs[i])[f[1]] = v
		}
	}
	add("blkio.throttle.io_service_bytes", func(d *DeviceIO) map[string]uint64 { return d.Bytes })
	add("blkio.throttle.io_serviced", func(d *DeviceIO) map[string]uint64 { return d.Ops })
	return devs
}

// Metrics reads a v2 cgroup's detail from its one directory.
func (m *v2) Metrics(path string) (*Metrics, error) {
	st, err := m.Stats(path)
	if err != nil {
		return nil, err
	}
	dir := m.dir(path)
	out := &Metrics{Stats: *st, MemoryLimit: Unlimited, MemorySwapLimit: Unlimited, PidsLimit: Unlimited, CPUQuotaUs: Unlimited}
	readV2CPU(dir, out)
	readV2Memory(dir, out)
	if v, err := readLimit(filepath.Join(dir, "pids.max")); err == nil {
		out.PidsLimit = v
	}
	out.Devices = readV2IO(dir)
	out.Procs, _ = readProcs(filepath.Join(dir, "cgroup.procs"))
	return out, nil
}

func readV2CPU(dir string, out *Metrics) {
	if st, err := readKeyed(filepath.Join(dir, "cpu.stat")); err == nil {
		out.CPUUserNs = st["user_usec"] * 1000
		out.CPUSystemNs = st["system_usec"] * 1000
		out.CFSPeriods = st["nr_periods"]
		out.CFSThrottledPeriods = st["nr_throttled"]
		out.CFSThrottledNs = st["throttled_usec"] * 1000
	}
	// cpu.max is "QUOTA PERIOD", QUOTA being "max" when unlimited.
	if b, err := os.ReadFile(filepath.Join(dir, "cpu.max")); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if q, err := parseLimit(f[0]); err == nil {
				out.CPUQuotaUs = q
			}
			if p, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				out.CPUPeriodUs = p
			}
		}
	}
	if v, err := readUint(filepath.Join(dir, "cpu.weight")); err == nil {
		out.CPUShares = weightToShares(v)
	}
}

func readV2Memory(dir string, out *Metrics) {
	st, _ := readKeyed(filepath.Join(dir, "memory.stat"))
	out.MemoryCache = st["file"]
	out.MemoryMappedFile = st["file_mapped"]
	out.MemoryKernel = v2KernelMemory(st)
	if v, err := readUint(filepath.Join(dir, "memory.swap.current")); err == nil {
		out.MemorySwap = v
	}
	// v2 keeps no fail counter; memory.events' "max" counts the times
	// usage hit memory.max, which is what v1's failcnt counted.
	if ev, err := readKeyed(filepath.Join(dir, "memory.events")); err == nil {
		out.MemoryFailcnt = ev["max"]
	}
	// memory.peak exists from Linux 5.19; before, the kernel keeps no peak.
	if v, err := readUint(filepath.Join(dir, "memory.peak")); err == nil {
		out.MemoryMaxUsage = v
	}
	if v, err := readLimit(filepath.Join(dir, "memory.max")); err == nil {
		out.MemoryLimit = v
	}
	if v, err := readLimit(filepath.Join(dir, "memory.swap.max")); err == nil {
		out.MemorySwapLimit = v
	}
}

// v2KernelMemory is memory.stat's "kernel" (Linux 5.18+), or on older
// kernels the sum of the kernel-owned items it adds up.
func v2KernelMemory(st map[string]uint64) uint64 {
	if v, ok := st["kernel"]; ok {
		return v
	}
	return st["kernel_stack"] + st["pagetables"] + st["percpu"] + st["sock"] + st["slab"]
}

// readV2IO parses io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...".
func readV2IO(dir string) []DeviceIO {
	b, err := os.ReadFile(filepath.Join(dir, "io.stat"))
	if err != nil {
		return nil
	}
	keys := map[string][2]string{
		"rbytes": {"bytes", "Read"}, "wbytes": {"bytes", "Write"}, "dbytes": {"bytes", "Discard"},
		"rios": {"ops", "Read"}, "wios": {"ops", "Write"}, "dios": {"ops", "Discard"},
	}
	var devs []DeviceIO
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		maj, min, ok := parseDevice(f[0])
		if !ok {
			continue
		}
		d := DeviceIO{Major: maj, Minor: min, Bytes: map[string]uint64{}, Ops: map[string]uint64{}}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			dst, known := keys[k]
			if err != nil || !known {
				continue
			}
			if dst[0] == "bytes" {
				d.Bytes[dst[1]] = n
			} else {
				d.Ops[dst[1]] = n
			}
		}
		devs = append(devs, d)
	}
	return devs
}

// weightToShares maps cgroup v2 cpu.weight back onto v1 cpu.shares, the
// inverse of sharesToWeight (cAdvisor reports shares on both versions).
func weightToShares(w uint64) uint64 {
	if w == 0 {
		return 0
	}
	return 2 + ((w-1)*262142)/9999
}

func (none) Metrics(string) (*Metrics, error) {
	return nil, fmt.Errorf("no cgroups: crib runs pods unconfined: %w", errdefs.ErrUnavailable)
}

// readLimit reads a limit file: "max" (v2) and -1 (a v1 CFS quota) both
// mean no limit.
func readLimit(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseLimit(strings.TrimSpace(string(b)))
}

func parseLimit(s string) (uint64, error) {
	if s == "max" || s == "-1" {
		return Unlimited, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func parseDevice(s string) (maj, min uint64, ok bool) {
	a, b, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	maj, err1 := strconv.ParseUint(a, 10, 64)
	min, err2 := strconv.ParseUint(b, 10, 64)
	return maj, min, err1 == nil && err2 == nil
}

func readProcs(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}
