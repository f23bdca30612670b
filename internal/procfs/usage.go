package procfs

import (
	"os"
	"sync"
	"time"
)

// ClockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture crib builds for.
const ClockTicks = 100

// Usage is what a set of processes used, summed from their stat lines:
// what crib reports for a pod or a container that has no cgroup to ask.
type Usage struct {
	// UserNs and SystemNs include the time of reaped children; CPUNs is
	// their sum.
	CPUNs, UserNs, SystemNs uint64
	RSSBytes                uint64
	// Faults counts minor and major faults (as a cgroup's pgfault does),
	// MajorFaults the major ones; both include reaped children's.
	Faults, MajorFaults uint64
	Procs               uint64
}

// Add counts one process. The formula is the same for pods and
// containers, and follows what a cgroup counts: a cgroup keeps the CPU
// time and faults of processes that have exited, so a process's reaped
// children (cutime, cstime, cminflt, cmajflt) count too. Leaving them out
// would also make the sum drop whenever a process reaps a child, and a
// counter that goes backwards gives no rate.
func (u *Usage) Add(st Stat, pageSize uint64) {
	u.UserNs += ticksToNs(st.Utime + st.Cutime)
	u.SystemNs += ticksToNs(st.Stime + st.Cstime)
	u.CPUNs = u.UserNs + u.SystemNs
	u.RSSBytes += st.RSSPages * pageSize
	u.Faults += st.Minflt + st.Majflt + st.Cminflt + st.Cmajflt
	u.MajorFaults += st.Majflt + st.Cmajflt
	u.Procs++
}

func ticksToNs(t uint64) uint64 { return t * uint64(time.Second) / ClockTicks }

// SumUsage adds up the live processes of pids; one that exits meanwhile
// counts for nothing.
func SumUsage(pids []int) Usage {
	var u Usage
	page := uint64(os.Getpagesize())
	for _, pid := range pids {
		if st, err := ReadStat(pid); err == nil {
			u.Add(st, page)
		}
	}
	return u
}

// CPUSampler turns cumulative CPU time into a rate, the CRI's
// usage_nano_cores: each sample is compared with the previous one of the
// same key (a pod's or a container's id). It is safe for concurrent use.
type CPUSampler struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	at      time.Time
	usageNs uint64
}

// Rate records usageNs at at for key and returns the CPU use since the
// key's previous sample in nanocores. The first sample, a sample no later
// than the previous one, and a counter that went backwards (a cgroup
// recreated, a process that was summed has gone) give 0.
func (s *CPUSampler) Rate(key string, at time.Time, usageNs uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[string]cpuSample{}
	}
	prev, ok := s.last[key]
	s.last[key] = cpuSample{at: at, usageNs: usageNs}
	dt := at.Sub(prev.at)
	if !ok || dt <= 0 || usageNs < prev.usageNs {
		return 0
	}
	return uint64(float64(usageNs-prev.usageNs) / dt.Seconds())
}

// Forget drops key's samples (the pod or container was removed).
func (s *CPUSampler) Forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, key)
}
