package memtrim

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// An excerpt of a crib child's /proc/self/smaps: the binary's text,
// rodata, a RELRO page the loader wrote (anonymous), its data, the heap.
const smapsSample = `00400000-00403000 r--p 00000000 fd:01 4242                               /usr/local/bin/crib
Rss:                  12 kB
Anonymous:             0 kB
00403000-01452000 r-xp 00003000 fd:01 4242                               /usr/local/bin/crib
Rss:               11980 kB
Anonymous:             0 kB
01452000-02586000 r--p 01052000 fd:01 4242                               /usr/local/bin/crib
Rss:                9216 kB
Anonymous:             0 kB
02586000-02589000 r--p 02186000 fd:01 4242                               /usr/local/bin/crib
Rss:                  12 kB
Anonymous:            12 kB
02589000-02652000 rw-p 02189000 fd:01 4242                               /usr/local/bin/crib
Rss:                 600 kB
Anonymous:           200 kB
02700000-02800000 r--p 00000000 fd:01 4242                               /usr/local/bin/crib
Rss:                   0 kB
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 77                         /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 900 kB
Anonymous:             0 kB
c000000000-c000400000 rw-p 00000000 00:00 0 
Rss:                3100 kB
Anonymous:          3100 kB
`

func TestDroppable(t *testing.T) {
	path := t.TempDir() + "/smaps"
	if err := os.WriteFile(path, []byte(smapsSample), 0o600); err != nil {
		t.Fatal(err)
	}
	maps, err := readSmaps(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 8 {
		t.Fatalf("parsed %d mappings, want 8", len(maps))
	}
	var got []string
	for _, m := range droppable(maps, 4242) {
		got = append(got, m.perms)
		if m.start < 0x400000 || m.end > 0x2586000 {
			t.Errorf("mapping %x-%x is not the binary's text or rodata", m.start, m.end)
		}
	}
	// The written RELRO page, the data, an unresident mapping and other
	// files are kept.
	if want := "r--p r-xp r--p"; strings.Join(got, " ") != want {
		t.Errorf("droppable = %v, want %s", got, want)
	}
}

// TestTrimUnmapsBinary trims this test binary: its read-only mappings
// leave the resident set, and the code they hold still runs.
func TestTrimUnmapsBinary(t *testing.T) {
	before := binaryResidentKiB(t)
	st, err := Trim()
	if err != nil {
		t.Fatal(err)
	}
	after := binaryResidentKiB(t)
	if st.Unmapped == 0 || after >= before {
		t.Fatalf("read-only binary pages resident: %d KiB before, %d KiB after; Trim says it unmapped %d bytes", before, after, st.Unmapped)
	}
	// Code and data faulted back in after the trim are intact.
	if got := strings.Repeat("ab", 3); got != "ababab" {
		t.Fatalf("after the trim strings.Repeat returned %q", got)
	}
}

func binaryResidentKiB(t *testing.T) int64 {
	t.Helper()
	var exe syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &exe); err != nil {
		t.Fatal(err)
	}
	maps, err := readSmaps("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var kib int64
	for _, m := range droppable(maps, exe.Ino) {
		kib += m.rssKiB
	}
	return kib
}
