package memtrim

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"time"

	"github.com/crib-dev/crib/internal/procfs"
)

const (
	// Quiet is how long crib waits after its last piece of work before it
	// trims: short enough that an idle daemon soon holds only what idling
	// needs, long enough that a client's next call of a sequence comes
	// first.
	Quiet = time.Second
	// minAlloc is how much the work since the last trim must have
	// allocated for the next trim to be worth its cost (a forced
	// collection, and minor faults as the heap grows again). It is
	// measured in allocation, not in the resident set: a burst that
	// frees what an earlier one left alive (pods removed after they were
	// made) reuses the heap's pages and does not grow the process, yet it
	// leaves them free. A kubelet's steady polling allocates little, so it
	// trims seldom, and an idle crib never.
	minAlloc = 1 << 20
)

// Idler trims memory once a burst of work is over: Quiet after the last
// piece of work ended with none in flight, if the work since the last
// trim allocated minAlloc. The zero Idler is not usable; see
// NewIdler. A nil *Idler does nothing.
type Idler struct {
	log *slog.Logger

	mu       sync.Mutex
	inflight int
	timer    *time.Timer
	stopped  bool
	quiet    time.Duration
	// trimMu serialises trims; trimmedAt is allocated() right after the
	// last one, trimmed whether there was one; baseThreads is how many
	// threads the process had at its first trim (once started).
	trimMu      sync.Mutex
	trimmed     bool
	trimmedAt   uint64
	baseThreads int
	// trim and allocated are Trim and allocatedBytes, replaced in tests.
	trim      func()
	allocated func() uint64
}

// NewIdler returns an Idler whose first piece of work, start-up, is in
// flight: the caller Ends it once it serves.
func NewIdler(log *slog.Logger) *Idler {
	i := &Idler{log: log, quiet: Quiet, trim: Trim, allocated: allocatedBytes, inflight: 1}
	i.timer = time.AfterFunc(time.Hour, i.fire)
	i.timer.Stop()
	return i
}

// Begin marks a piece of work started; End marks it done.
func (i *Idler) Begin() {
	if i == nil {
		return
	}
	i.mu.Lock()
	i.inflight++
	i.mu.Unlock()
}

// End marks a piece of work done; with none left in flight, the trim is
// (re)scheduled Quiet from now.
func (i *Idler) End() {
	if i == nil {
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.inflight--
	if i.inflight == 0 && !i.stopped {
		i.timer.Reset(i.quiet)
	}
}

// Stop cancels a scheduled trim; later work schedules none.
func (i *Idler) Stop() {
	if i == nil {
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.stopped = true
	i.timer.Stop()
}

func (i *Idler) fire() {
	i.mu.Lock()
	busy := i.inflight > 0 || i.stopped
	i.mu.Unlock()
	if busy {
		// The End of that work schedules the trim again.
		return
	}
	i.trimMu.Lock()
	defer i.trimMu.Unlock()
	if i.trimmed && i.allocated()-i.trimmedAt < minAlloc {
		return
	}
	debug := i.log.Enabled(context.Background(), slog.LevelDebug)
	var before int64
	if debug {
		before, _ = residentBytes()
	}
	// Counted from before the trim: what is allocated while it runs was
	// not there to be returned, so it belongs to the next one.
	at := i.allocated()
	i.trim()
	if !i.trimmed {
		i.baseThreads = threads()
	} else if extra := threads() - i.baseThreads; extra > 0 {
		shedThreads(extra)
	}
	i.trimmed, i.trimmedAt = true, at
	if debug {
		after, _ := residentBytes()
		i.log.Debug("memory trimmed", append([]any{"rss_before", before, "rss_after", after}, runtimeMemory()...)...)
	}
}

// maxShed bounds the threads one trim ends.
const maxShed = 256

// shedThreads ends up to n idle threads. The Go runtime keeps every
// thread it ever made: a burst of blocking system calls (100 pods removed
// at once: mounts, kills, CNI plugins' execs) leaves tens of them idle
// for good, each with its signal stack, its thread stack and its M. A
// goroutine that locks its thread and returns without unlocking it ends
// that thread; each one takes an idle thread to run on (or the trimming
// goroutine's, which then takes an idle one), so each ends one.
func shedThreads(n int) {
	for range min(n, maxShed) {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(done)
		}()
		<-done
	}
}

// threads is how many threads the runtime has made and not ended.
func threads() int {
	s := []metrics.Sample{{Name: "/sched/threads/total:threads"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int(s[0].Value.Uint64())
}

// allocatedBytes is how much the heap has allocated since the process
// started.
func allocatedBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// runtimeMemory is the Go runtime's account of its memory (bytes), by
// class, for the trim's log line: what the anonymous part of the resident
// set is.
func runtimeMemory() []any {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/memory/classes/os-stacks:bytes"},
		{Name: "/memory/classes/metadata/other:bytes"},
		{Name: "/memory/classes/metadata/mspan/inuse:bytes"},
		{Name: "/memory/classes/metadata/mcache/inuse:bytes"},
		{Name: "/memory/classes/profiling/buckets:bytes"},
		{Name: "/memory/classes/other:bytes"},
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/sched/threads/total:threads"},
	}
	metrics.Read(samples)
	var attrs []any
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			attrs = append(attrs, strings.TrimPrefix(s.Name, "/memory/classes/"), s.Value.Uint64())
		}
	}
	return attrs
}

// residentBytes is the process's resident set.
func residentBytes() (int64, error) {
	st, err := procfs.ReadStat(os.Getpid())
	if err != nil {
		return 0, err
	}
	return int64(st.RSSPages) * int64(os.Getpagesize()), nil
}
