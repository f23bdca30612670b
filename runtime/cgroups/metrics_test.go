package cgroups

import (
	"errors"
	"reflect"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

// The fixtures copy the kernel's file formats (Linux 6.1, as on the
// project's machines); what is tested is which file feeds which field and
// what an absent file leaves.

var v1Full = map[string]string{
	"cpuacct/crib/c/cpuacct.usage":        "9000000000\n",
	"cpuacct/crib/c/cpuacct.usage_user":   "6000000000\n",
	"cpuacct/crib/c/cpuacct.usage_sys":    "3000000000\n",
	"cpuacct/crib/c/cpuacct.stat":         "user 599\nsystem 301\n",
	"cpu/crib/c/cpu.stat":                 "nr_periods 50\nnr_throttled 7\nthrottled_time 350000000\nnr_bursts 0\nburst_time 0\n",
	"cpu/crib/c/cpu.cfs_period_us":        "100000\n",
	"cpu/crib/c/cpu.cfs_quota_us":         "20000\n",
	"cpu/crib/c/cpu.shares":               "1024\n",
	"memory/crib/c/memory.usage_in_bytes": "4096000\n",
	"memory/crib/c/memory.stat": "cache 1\nrss 2\ntotal_cache 100000\ntotal_rss 2000000\ntotal_mapped_file 40960\n" +
		"total_swap 8192\ntotal_pgfault 70\ntotal_pgmajfault 2\ntotal_inactive_file 96000\n",
	"memory/crib/c/memory.oom_control":             "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
	"memory/crib/c/memory.failcnt":                 "3\n",
	"memory/crib/c/memory.max_usage_in_bytes":      "5000000\n",
	"memory/crib/c/memory.kmem.usage_in_bytes":     "300000\n",
	"memory/crib/c/memory.limit_in_bytes":          "67108864\n",
	"memory/crib/c/memory.memsw.limit_in_bytes":    "67108864\n",
	"memory/crib/c/cgroup.procs":                   "10\n11\n",
	"pids/crib/c/pids.current":                     "4\n",
	"pids/crib/c/pids.max":                         "max\n",
	"pids/crib/c/cgroup.procs":                     "10\n11\n",
	"blkio/crib/c/blkio.throttle.io_service_bytes": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n",
	"blkio/crib/c/blkio.throttle.io_serviced":      "8:0 Read 1\n8:0 Write 2\n8:0 Sync 3\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 3\nTotal 3\n",
}

func v1Manager(root string, controllers ...string) *v1 {
	bases := map[string]string{}
	for _, c := range controllers {
		bases[c] = root + "/" + c + "/crib"
	}
	return &v1{root: root, bases: bases, prefix: "/crib"}
}

func TestV1Metrics(t *testing.T) {
	all := []string{"cpu", "cpuacct", "memory", "pids", "blkio"}
	cases := []struct {
		name        string
		files       map[string]string
		controllers []string
		want        Metrics
	}{
		{"every controller delegated", v1Full, all, Metrics{
			Stats: Stats{CPUUsageNs: 9e9, MemoryUsage: 4096000, MemoryWorkingSet: 4000000, MemoryRSS: 2000000,
				PageFaults: 70, MajorPageFaults: 2, Pids: 4, OOMKills: 1},
			CPUUserNs: 6e9, CPUSystemNs: 3e9, CFSPeriods: 50, CFSThrottledPeriods: 7, CFSThrottledNs: 350000000,
			CPUPeriodUs: 100000, CPUQuotaUs: 20000, CPUShares: 1024,
			MemoryCache: 100000, MemoryMappedFile: 40960, MemorySwap: 8192, MemoryFailcnt: 3,
			MemoryMaxUsage: 5000000, MemoryKernel: 300000, MemoryLimit: 64 << 20, MemorySwapLimit: 64 << 20,
			PidsLimit: Unlimited, Procs: []int{10, 11},
			Devices: []DeviceIO{{Major: 8, Minor: 0,
				Bytes: map[string]uint64{"Read": 4096, "Write": 8192, "Sync": 12288, "Async": 0, "Discard": 0, "Total": 12288},
				Ops:   map[string]uint64{"Read": 1, "Write": 2, "Sync": 3, "Async": 0, "Discard": 0, "Total": 3}}},
		}},
		// Older kernels lack the nanosecond split; without swap
		// accounting or kmem there is neither memsw nor kmem file, and
		// a quota of -1 is no quota.
		{"old kernel, no swap accounting", map[string]string{
			"cpuacct/crib/c/cpuacct.usage":        "9000000000\n",
			"cpuacct/crib/c/cpuacct.stat":         "user 599\nsystem 301\n",
			"cpu/crib/c/cpu.cfs_quota_us":         "-1\n",
			"cpu/crib/c/cpu.cfs_period_us":        "100000\n",
			"memory/crib/c/memory.usage_in_bytes": "4096\n",
			"memory/crib/c/memory.limit_in_bytes": "9223372036854771712\n",
			"memory/crib/c/memory.stat":           "total_rss 4096\n",
			"memory/crib/c/cgroup.procs":          "12\n",
		}, []string{"cpu", "cpuacct", "memory"}, Metrics{
			Stats:     Stats{CPUUsageNs: 9e9, MemoryUsage: 4096, MemoryWorkingSet: 4096, MemoryRSS: 4096},
			CPUUserNs: 5990000000, CPUSystemNs: 3010000000, CPUPeriodUs: 100000, CPUQuotaUs: Unlimited,
			MemoryLimit: 9223372036854771712, MemorySwapLimit: Unlimited, PidsLimit: Unlimited, Procs: []int{12},
		}},
		// Only pids delegated: no memory controller, so no limit applies
		// and nothing was counted.
		{"pids only", v1Full, []string{"pids"}, Metrics{
			Stats:      Stats{Pids: 4},
			CPUQuotaUs: Unlimited, MemoryLimit: Unlimited, MemorySwapLimit: Unlimited, PidsLimit: Unlimited,
			Procs: []int{10, 11},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := v1Manager(tree(t, tc.files), tc.controllers...)
			got, err := m.Metrics("/crib/c")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestV2Metrics(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  Metrics
	}{
		{"limited, Linux 6.1", map[string]string{
			"c/cpu.stat":            "usage_usec 9000000\nuser_usec 6000000\nsystem_usec 3000000\nnr_periods 50\nnr_throttled 7\nthrottled_usec 350000\n",
			"c/cpu.max":             "20000 100000\n",
			"c/cpu.weight":          "39\n",
			"c/memory.current":      "4096000\n",
			"c/memory.stat":         "anon 2000000\nfile 100000\nkernel 300000\nkernel_stack 1\nfile_mapped 40960\ninactive_file 96000\npgfault 70\npgmajfault 2\n",
			"c/memory.events":       "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
			"c/memory.peak":         "5000000\n",
			"c/memory.max":          "67108864\n",
			"c/memory.swap.current": "8192\n",
			"c/memory.swap.max":     "0\n",
			"c/pids.current":        "4\n",
			"c/pids.max":            "100\n",
			"c/cgroup.procs":        "10\n11\n",
			"c/io.stat":             "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
		}, Metrics{
			Stats: Stats{CPUUsageNs: 9e9, MemoryUsage: 4096000, MemoryWorkingSet: 4000000, MemoryRSS: 2000000,
				PageFaults: 70, MajorPageFaults: 2, Pids: 4, OOMKills: 1},
			CPUUserNs: 6e9, CPUSystemNs: 3e9, CFSPeriods: 50, CFSThrottledPeriods: 7, CFSThrottledNs: 350000000,
			CPUPeriodUs: 100000, CPUQuotaUs: 20000, CPUShares: 998,
			MemoryCache: 100000, MemoryMappedFile: 40960, MemorySwap: 8192, MemoryFailcnt: 3,
			MemoryMaxUsage: 5000000, MemoryKernel: 300000, MemoryLimit: 64 << 20, MemorySwapLimit: 0,
			PidsLimit: 100, Procs: []int{10, 11},
			Devices: []DeviceIO{{Major: 8, Minor: 0,
				Bytes: map[string]uint64{"Read": 4096, "Write": 8192, "Discard": 0},
				Ops:   map[string]uint64{"Read": 1, "Write": 2, "Discard": 0}}},
		}},
		// Before 5.18 there is no "kernel" line (the parts are summed)
		// and before 5.19 no memory.peak; no io or swap controller.
		{"unlimited, older kernel", map[string]string{
			"c/cpu.stat":       "usage_usec 10\nuser_usec 6\nsystem_usec 4\n",
			"c/cpu.max":        "max 100000\n",
			"c/memory.current": "4096\n",
			"c/memory.stat":    "anon 4096\nslab 100\nkernel_stack 20\npagetables 3\npercpu 0\nsock 0\n",
			"c/memory.max":     "max\n",
			"c/pids.max":       "max\n",
		}, Metrics{
			Stats:     Stats{CPUUsageNs: 10000, MemoryUsage: 4096, MemoryWorkingSet: 4096, MemoryRSS: 4096},
			CPUUserNs: 6000, CPUSystemNs: 4000, CPUPeriodUs: 100000, CPUQuotaUs: Unlimited,
			MemoryKernel: 123, MemoryLimit: Unlimited, MemorySwapLimit: Unlimited, PidsLimit: Unlimited,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &v2{root: tree(t, tc.files)}
			got, err := m.Metrics("/c")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestMetricsWithoutCgroup(t *testing.T) {
	if _, err := (&v2{root: t.TempDir()}).Metrics("/gone"); err == nil {
		t.Error("v2: a missing cgroup gave metrics")
	}
	if _, err := v1Manager(t.TempDir(), "cpu").Metrics("/crib/gone"); err == nil {
		t.Error("v1: a missing cgroup gave metrics")
	}
	if _, err := None().Metrics(""); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("none: %v, want ErrUnavailable", err)
	}
}

func TestWeightToShares(t *testing.T) {
	// Round trip through sharesToWeight loses at most the rounding of
	// the integer division.
	for weight, want := range map[uint64]uint64{0: 0, 1: 2, 39: 998, 100: 2597, 10000: 262144} {
		if got := weightToShares(weight); got != want {
			t.Errorf("weightToShares(%d) = %d, want %d", weight, got, want)
		}
	}
}
