package memtrim

import (
	"runtime"
	"testing"
)

// retained is the heap that is free but still held from the system.
func retained() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapIdle - ms.HeapReleased
}

// TestTrimReturnsFreeHeap: after a burst of garbage has been collected,
// the runtime still holds its pages; Trim returns them.
func TestTrimReturnsFreeHeap(t *testing.T) {
	keep := make([][]byte, 0, 128)
	for range 128 {
		keep = append(keep, make([]byte, 256<<10))
	}
	runtime.KeepAlive(keep)
	keep = nil
	runtime.GC()
	before := retained()
	Trim()
	after := retained()
	t.Logf("free heap held: %d KiB after the collection, %d KiB after Trim", before>>10, after>>10)
	if after > 4<<20 {
		t.Errorf("Trim left %d KiB of free heap held (before: %d KiB)", after>>10, before>>10)
	}
}
