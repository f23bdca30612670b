package memtrim

import (
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeIdler trims into a channel, with the allocation count alloc reports.
func fakeIdler(alloc *atomic.Uint64) (*Idler, chan struct{}) {
	trims := make(chan struct{}, 10)
	i := NewIdler(discard())
	i.quiet = time.Millisecond
	i.trim = func() { trims <- struct{}{} }
	i.allocated = alloc.Load
	return i, trims
}

func expectTrim(t *testing.T, trims chan struct{}, want bool, why string) {
	t.Helper()
	// Much longer than quiet: the trim is due long before.
	select {
	case <-trims:
		if !want {
			t.Fatalf("trimmed %s", why)
		}
	case <-time.After(200 * time.Millisecond):
		if want {
			t.Fatalf("no trim %s", why)
		}
	}
}

func TestIdlerTrimsAfterWork(t *testing.T) {
	var alloc atomic.Uint64
	alloc.Store(30 << 20)
	i, trims := fakeIdler(&alloc)
	defer i.Stop()

	expectTrim(t, trims, false, "during start-up")
	i.End() // start-up done
	expectTrim(t, trims, true, "after start-up")

	i.Begin()
	alloc.Add(5 << 20)
	expectTrim(t, trims, false, "with a call in flight")
	i.End()
	expectTrim(t, trims, true, "after a burst that allocated")

	i.Begin()
	alloc.Add(minAlloc / 2)
	i.End()
	expectTrim(t, trims, false, "after calls that allocated less than minAlloc")
	i.Begin()
	alloc.Add(minAlloc / 2)
	i.End()
	expectTrim(t, trims, true, "once the calls since the last trim allocated minAlloc")

	i.Stop()
	i.Begin()
	alloc.Add(5 << 20)
	i.End()
	expectTrim(t, trims, false, "once stopped")
}

// A burst that frees what the one before it left alive (pods removed
// after they were made, with the trim in between) reuses the heap's
// pages: the process does not grow, but the heap it leaves is free, and
// the trim after it returns it.
func TestIdlerReturnsWhatABurstFreed(t *testing.T) {
	trims := make(chan struct{}, 10)
	i := NewIdler(discard())
	i.quiet = time.Millisecond
	i.trim = func() { Trim(); trims <- struct{}{} }
	defer i.Stop()

	// The first burst (start-up) leaves 16 MiB alive when it trims.
	live := make([][]byte, 0, 256)
	for range 256 {
		live = append(live, dirty(64<<10))
	}
	i.End()
	expectTrim(t, trims, true, "after start-up")

	// The second drops it and makes as much garbage in the same pages.
	i.Begin()
	runtime.KeepAlive(live)
	live = nil
	runtime.GC()
	var garbage [][]byte
	for range 64 {
		garbage = append(garbage, dirty(64<<10))
	}
	runtime.KeepAlive(garbage)
	garbage = nil
	i.End()
	expectTrim(t, trims, true, "after a burst that freed what the last one left")
	if held := retained(); held > 4<<20 {
		t.Errorf("%d KiB of free heap still held after the burst", held>>10)
	}
}

// dirty allocates n bytes and writes them, so that they are resident.
func dirty(n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = 1
	}
	return b
}

// TestIdlerEndsIdleThreads: a burst of blocking system calls leaves the
// runtime with a thread per concurrent call, idle for good; the trim
// after it ends them, down to the count of the first trim.
func TestIdlerEndsIdleThreads(t *testing.T) {
	trims := make(chan struct{}, 10)
	i := NewIdler(discard())
	i.quiet = time.Millisecond
	i.trim = func() { trims <- struct{}{} }
	defer i.Stop()
	i.End()
	expectTrim(t, trims, true, "after start-up")
	base := threads()

	i.Begin()
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := unix.NsecToTimespec((100 * time.Millisecond).Nanoseconds())
			unix.Nanosleep(&ts, nil)
		}()
	}
	wg.Wait()
	grown := threads()
	if grown < base+8 {
		t.Skipf("16 blocking calls made %d threads, not enough to tell", grown-base)
	}
	alloc := make([]byte, 2*minAlloc) // the burst's work
	runtime.KeepAlive(alloc)
	i.End()
	expectTrim(t, trims, true, "after the burst")
	deadline := time.Now().Add(2 * time.Second)
	for threads() > base+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c := threads(); c > base+2 {
		t.Errorf("%d threads after the trim: %d before the burst, %d after it", c, base, grown)
	}
}

func TestNilIdler(t *testing.T) {
	var i *Idler
	i.Begin()
	i.End()
	i.Stop()
}
