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

import "runtime/debug"

// Trim returns the heap's free pages to the system.
func Trim() { debug.FreeOSMemory() }
