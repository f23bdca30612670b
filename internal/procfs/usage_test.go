package procfs

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestUsageAdd(t *testing.T) {
	const s = uint64(time.Second)
	for _, tc := range []struct {
		name  string
		stats []Stat
		want  Usage
	}{
		{"nothing", nil, Usage{}},
		{"one process: user and system time, faults, resident pages",
			[]Stat{{Utime: 150, Stime: 50, Minflt: 7, Majflt: 2, RSSPages: 3}},
			Usage{CPUNs: 2 * s, UserNs: 3 * s / 2, SystemNs: s / 2, RSSBytes: 3 * 4096, Faults: 9, MajorFaults: 2, Procs: 1}},
		{"reaped children's time and faults count, as a cgroup's do",
			[]Stat{{Utime: 100, Cutime: 100, Stime: 0, Cstime: 100, Minflt: 1, Cminflt: 10, Majflt: 1, Cmajflt: 5}},
			Usage{CPUNs: 3 * s, UserNs: 2 * s, SystemNs: s, Faults: 17, MajorFaults: 6, Procs: 1}},
		{"processes add up",
			[]Stat{{Utime: 100, RSSPages: 1}, {Stime: 100, RSSPages: 2, Majflt: 1}},
			Usage{CPUNs: 2 * s, UserNs: s, SystemNs: s, RSSBytes: 3 * 4096, Faults: 1, MajorFaults: 1, Procs: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Usage
			for _, st := range tc.stats {
				got.Add(st, 4096)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestUsageMonotonicAcrossReap: when a process reaps a child, the child's
// time moves into the parent's cutime and the sum does not drop.
func TestUsageMonotonicAcrossReap(t *testing.T) {
	var before, after Usage
	before.Add(Stat{Utime: 10}, 4096)
	before.Add(Stat{Utime: 30}, 4096)            // the child
	after.Add(Stat{Utime: 10, Cutime: 30}, 4096) // reaped
	if after.CPUNs < before.CPUNs {
		t.Errorf("CPU time dropped from %d to %d when a child was reaped", before.CPUNs, after.CPUNs)
	}
}

func TestCPUSamplerRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type sample struct {
		key     string
		at      time.Time
		usageNs uint64
		want    uint64
	}
	for _, tc := range []struct {
		name    string
		samples []sample
		forget  int // forget "a" before this sample (0: never)
	}{
		{"the first sample has no rate", []sample{{"a", t0, 5e9, 0}}, 0},
		{"half a core over two seconds", []sample{{"a", t0, 1e9, 0}, {"a", t0.Add(2 * time.Second), 2e9, 5e8}}, 0},
		{"keys are apart", []sample{{"a", t0, 1e9, 0}, {"b", t0.Add(time.Second), 9e9, 0}, {"a", t0.Add(time.Second), 2e9, 1e9}}, 0},
		{"a counter that went backwards", []sample{{"a", t0, 5e9, 0}, {"a", t0.Add(time.Second), 1e9, 0}, {"a", t0.Add(2 * time.Second), 2e9, 1e9}}, 0},
		{"no time passed", []sample{{"a", t0, 1e9, 0}, {"a", t0, 2e9, 0}}, 0},
		{"forgotten", []sample{{"a", t0, 1e9, 0}, {"a", t0.Add(time.Second), 2e9, 0}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s CPUSampler
			for i, x := range tc.samples {
				if tc.forget != 0 && i == tc.forget {
					s.Forget("a")
				}
				if got := s.Rate(x.key, x.at, x.usageNs); got != x.want {
					t.Errorf("sample %d: rate %d, want %d", i, got, x.want)
				}
			}
		})
	}
}

func TestLiveness(t *testing.T) {
	self, err := StartTime(os.Getpid())
	if err != nil || self == 0 || !Alive(os.Getpid()) || !AliveSince(os.Getpid(), self) || !AliveSince(os.Getpid(), 0) {
		t.Fatalf("StartTime(self) = %d, %v; alive %v", self, err, Alive(os.Getpid()))
	}
	if AliveSince(os.Getpid(), self+1) {
		t.Error("AliveSince accepts another start time")
	}
	if Alive(0) || Alive(-1) {
		t.Error("pid 0 or -1 is alive")
	}
	// A child that exited and is not yet reaped is a zombie: exited.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ReadStat(pid)
		if err == nil && st.Exited() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d never became a zombie: %+v %v", pid, st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := StartTime(pid); !errors.Is(err, ErrExited) || Alive(pid) {
		t.Errorf("a zombie: StartTime error %v, alive %v", err, Alive(pid))
	}
	cmd.Wait()
	if _, err := StartTime(pid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a reaped process: StartTime error %v, want not exist", err)
	}
}
