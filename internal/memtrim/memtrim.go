// Package memtrim gives the Go heap's free pages, and the threads a
// burst left idle, back to the system once crib goes idle after a burst
// of work (package-level Trim, and Idler, which decides when and ends
// the threads).
//
// The Go runtime returns freed heap pages slowly (its background
// scavenger keeps a margin above the heap goal), so after a burst (100
// pods made and removed, a pull) the daemon would hold the burst's peak
// for minutes. A trim forces a collection and returns what is free at
// once.
//
// It does not unmap crib's own binary: its clean text and read-only data
// pages would stay in the page cache, so no memory would be freed, and a
// kubelet's next poll faults them straight back; it would only lower the
// process's PSS figure.
package memtrim

import (
	"runtime"
	"runtime/debug"
)

// Trim returns the heap's free pages to the system. It collects three
// times: the first moves what sync.Pools hold into their victim caches
// and the second frees it (right after a 100 MB pull, the decompressors'
// and copy buffers: 19 MiB of the daemon's heap still alive after a
// single collection, 2 MiB after two), then returns the free pages; the
// last returns what the collection before it freed only once it had
// returned (its work buffers, about 3 MiB after a pull).
func Trim() {
	runtime.GC()
	debug.FreeOSMemory()
	debug.FreeOSMemory()
}
