// Package memtrim gives memory back to the system once crib goes idle
// after a burst of work: the Go heap's free pages (debug.FreeOSMemory)
// and the pages of crib's own binary that the burst mapped in.
//
// crib's binary is large (it links containers/image, containers/storage,
// gRPC, NRI): start-up and a burst of CRI calls fault in most of its text
// and read-only data, and the kernel maps the neighbours of each faulted
// page too (fault-around). Those pages stay in the process's RSS and PSS
// until it exits though an idle daemon runs only a small part of them.
// Unmapping them (MADV_DONTNEED on the binary's read-only, unmodified
// mappings) leaves them in the page cache, shared and reclaimable; what
// the daemon runs next faults back from there (a minor fault, no I/O).
package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Stats is what one Trim gave back, in bytes.
type Stats struct {
	// Unmapped is the resident size of the binary's read-only mappings
	// that Trim unmapped.
	Unmapped int64
}

// Trim returns the heap's free pages to the system and unmaps the
// binary's resident read-only pages.
func Trim() (Stats, error) {
	debug.FreeOSMemory()
	return dropBinaryPages()
}

// mapping is one line of /proc/self/smaps with the fields Trim needs.
type mapping struct {
	start, end uintptr
	perms      string
	inode      uint64
	rssKiB     int64
	anonKiB    int64
}

// dropBinaryPages unmaps the resident pages of the executable's mappings
// that are neither writable nor written: text, rodata, pclntab. A mapping
// with any anonymous (copied-on-write) page is left alone: the dynamic
// loader's relocations made before RELRO turned it read-only, or a
// debugger's breakpoint, live only there.
func dropBinaryPages() (Stats, error) {
	var st Stats
	var exe syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &exe); err != nil {
		return st, fmt.Errorf("stat of crib's binary: %w", err)
	}
	maps, err := readSmaps("/proc/self/smaps")
	if err != nil {
		return st, err
	}
	for _, m := range droppable(maps, exe.Ino) {
		// A raw syscall: the range is the binary's, not a Go slice.
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); e != 0 {
			return st, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, e)
		}
		st.Unmapped += m.rssKiB << 10
	}
	return st, nil
}

// droppable are the resident mappings of the file with inode ino that are
// neither writable nor written.
func droppable(maps []mapping, ino uint64) []mapping {
	var out []mapping
	for _, m := range maps {
		if m.inode == ino && !strings.Contains(m.perms, "w") && m.anonKiB == 0 && m.rssKiB > 0 {
			out = append(out, m)
		}
	}
	return out
}

// readSmaps parses the mapping headers and their Rss and Anonymous lines.
// It streams the file: a daemon's smaps runs to hundreds of KiB, and what
// Trim reads must not become the garbage it is there to give back.
func readSmaps(path string) ([]mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var maps []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && !bytes.ContainsAny(k, " -") {
			if len(maps) > 0 {
				setField(&maps[len(maps)-1], string(k), v)
			}
			continue
		}
		if m, ok := parseHeader(strings.Fields(string(line))); ok {
			maps = append(maps, m)
		}
	}
	return maps, sc.Err()
}

// setField keeps the Rss and Anonymous lines ("Rss:   12 kB").
func setField(m *mapping, key string, v []byte) {
	var dst *int64
	switch key {
	case "Rss":
		dst = &m.rssKiB
	case "Anonymous":
		dst = &m.anonKiB
	default:
		return
	}
	n, _, _ := bytes.Cut(bytes.TrimSpace(v), []byte(" "))
	*dst, _ = strconv.ParseInt(string(n), 10, 64)
}

// parseHeader reads "start-end perms offset dev inode [path]".
func parseHeader(f []string) (mapping, bool) {
	var m mapping
	if len(f) < 5 || strings.HasSuffix(f[0], ":") {
		return m, false
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return m, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	inode, err3 := strconv.ParseUint(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return m, false
	}
	return mapping{start: uintptr(start), end: uintptr(end), perms: f[1], inode: inode}, true
}
