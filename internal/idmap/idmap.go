// Package idmap owns the arithmetic of user-namespace id mappings: reading
// the subordinate id ranges of /etc/subuid and /etc/subgid, and laying them
// out as the uid_map/gid_map lines newuidmap and newgidmap are asked to
// write.
//
// The mapping crib uses puts container id 0 on the user's own host id, then
// the user's subordinate ranges one after another from container id 1.
// This package must not run newuidmap, open /proc/PID/uid_map or read any
// file by itself: callers hand it readers and get back numbers and argv.
package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/crib-dev/crib/internal/errdefs"
)

// maxID bounds ids: the kernel's ids are 32-bit and (uid_t)-1 is reserved.
const maxID = 1<<32 - 1

// Range is Count consecutive host ids starting at Start.
type Range struct {
	Start int `json:"start"`
	Count int `json:"count"`
}

// End is one past the last id of the range.
func (r Range) End() int { return r.Start + r.Count }

// String formats the range the way usermod --add-subuids takes it: FIRST-LAST.
func (r Range) String() string {
	return strconv.Itoa(r.Start) + "-" + strconv.Itoa(r.End()-1)
}

// Entry is one line of /etc/subuid or /etc/subgid.
type Entry struct {
	// Owner is the first field as written: a user name or a numeric uid.
	Owner string
	Range
}

// Total is the number of ids in ranges.
func Total(ranges []Range) int {
	n := 0
	for _, r := range ranges {
		n += r.Count
	}
	return n
}

// Parse reads every well-formed entry of a subuid/subgid file. Blank lines
// and lines starting with '#' are skipped. Malformed lines are skipped too,
// and reported together in the returned error (one "line N" per line), so a
// caller can both use the good entries and tell the user about the bad ones.
func Parse(r io.Reader) ([]Entry, error) {
	var entries []Entry
	var bad []error
	err := eachLine(r, func(n int, line string) {
		e, err := parseLine(line)
		if err != nil {
			bad = append(bad, fmt.Errorf("line %d: %w", n, err))
			return
		}
		entries = append(entries, e)
	})
	if err != nil {
		return entries, err
	}
	return entries, errors.Join(bad...)
}

// Lookup returns the subordinate ranges of the user named user or with uid
// uid (either may appear as the first field), in ascending order, with any
// overlap between entries cut away so that every id appears once and every
// returned range lies inside one entry of the file (newuidmap checks each
// requested range against the file). A malformed line that belongs to the
// user is an error; malformed lines of other users are not the user's
// problem and are ignored. No entry at all wraps errdefs.ErrNotFound.
func Lookup(r io.Reader, user string, uid int) ([]Range, error) {
	uidField := strconv.Itoa(uid)
	var ranges []Range
	var bad error
	err := eachLine(r, func(n int, line string) {
		owner, _, _ := strings.Cut(line, ":")
		if owner != uidField && (user == "" || owner != user) {
			return
		}
		e, err := parseLine(line)
		if err != nil {
			bad = errors.Join(bad, fmt.Errorf("line %d: %w", n, err))
			return
		}
		ranges = append(ranges, e.Range)
	})
	if err != nil {
		return nil, err
	}
	if bad != nil {
		return nil, bad
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("no subordinate ids for user %q (uid %d): %w", user, uid, errdefs.ErrNotFound)
	}
	return disjoint(ranges), nil
}

// FirstFree is the lowest id at or above from where count ids overlap no
// entry of entries: the start of a range an administrator can give a new
// user without sharing ids with anyone.
func FirstFree(entries []Entry, from, count int) int {
	sorted := make([]Range, len(entries))
	for i, e := range entries {
		sorted[i] = e.Range
	}
	slices.SortFunc(sorted, func(a, b Range) int { return a.Start - b.Start })
	start := from
	for _, r := range sorted {
		if r.End() <= start {
			continue
		}
		if r.Start >= start+count {
			break
		}
		start = r.End()
	}
	return start
}

func eachLine(r io.Reader, fn func(n int, line string)) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(n, line)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading subordinate id file: %w", err)
	}
	return nil
}

func parseLine(line string) (Entry, error) {
	fields := strings.Split(line, ":")
	if len(fields) != 3 {
		return Entry{}, fmt.Errorf("%q: want NAME:START:COUNT: %w", line, errdefs.ErrInvalidArgument)
	}
	if fields[0] == "" {
		return Entry{}, fmt.Errorf("%q: empty owner: %w", line, errdefs.ErrInvalidArgument)
	}
	start, err1 := strconv.Atoi(fields[1])
	count, err2 := strconv.Atoi(fields[2])
	if err1 != nil || err2 != nil || start < 0 || count <= 0 || start+count > maxID {
		return Entry{}, fmt.Errorf("%q: start and count must be ids with count > 0: %w", line, errdefs.ErrInvalidArgument)
	}
	return Entry{Owner: fields[0], Range: Range{Start: start, Count: count}}, nil
}

// disjoint sorts ranges and trims each one by whatever the ranges before it
// already cover. The kernel refuses a map whose host ranges overlap, and a
// user listed both by name and by uid is a common way to get overlap.
func disjoint(ranges []Range) []Range {
	sorted := slices.Clone(ranges)
	slices.SortFunc(sorted, func(a, b Range) int {
		if a.Start != b.Start {
			return a.Start - b.Start
		}
		return b.Count - a.Count
	})
	var out []Range
	covered := 0
	for _, r := range sorted {
		start := max(r.Start, covered)
		if start >= r.End() {
			continue
		}
		out = append(out, Range{Start: start, Count: r.End() - start})
		covered = r.End()
	}
	return out
}

// Mapping is one line of a uid_map or gid_map: Count ids from ContainerID in
// the namespace are HostID onwards outside it.
type Mapping struct {
	ContainerID int `json:"containerID"`
	HostID      int `json:"hostID"`
	Count       int `json:"count"`
}

// Map is a whole uid_map or gid_map.
type Map []Mapping

// Build lays out crib's mapping: container id 0 is hostID (the user itself),
// then the subordinate ranges follow one another from container id 1. A
// subordinate range that contains hostID (a misconfigured file) is split
// around it, since the kernel refuses a host id mapped twice.
func Build(hostID int, ranges []Range) Map {
	m := Map{{ContainerID: 0, HostID: hostID, Count: 1}}
	next := 1
	for _, r := range withoutID(ranges, hostID) {
		m = append(m, Mapping{ContainerID: next, HostID: r.Start, Count: r.Count})
		next += r.Count
	}
	return m
}

// Size is the number of ids the map covers: container ids 0 to Size()-1.
func (m Map) Size() int {
	n := 0
	for _, l := range m {
		n += l.Count
	}
	return n
}

// Args is the argument list of newuidmap/newgidmap (without the program
// name) that writes m for process pid: PID then CONTAINERID HOSTID COUNT
// for each line.
func (m Map) Args(pid int) []string {
	args := make([]string, 0, 1+3*len(m))
	args = append(args, strconv.Itoa(pid))
	for _, l := range m {
		args = append(args, strconv.Itoa(l.ContainerID), strconv.Itoa(l.HostID), strconv.Itoa(l.Count))
	}
	return args
}

// NewuidmapArgs is Build(hostID, ranges).Args(pid):
// PID 0 HOSTID 1 1 START COUNT 1+COUNT START2 COUNT2 ...
func NewuidmapArgs(pid int, hostID int, ranges []Range) []string {
	return Build(hostID, ranges).Args(pid)
}

func withoutID(ranges []Range, id int) []Range {
	var out []Range
	for _, r := range ranges {
		if id < r.Start || id >= r.End() {
			out = append(out, r)
			continue
		}
		if id > r.Start {
			out = append(out, Range{Start: r.Start, Count: id - r.Start})
		}
		if id+1 < r.End() {
			out = append(out, Range{Start: id + 1, Count: r.End() - id - 1})
		}
	}
	return out
}

// PodIDs is the number of ids a user-namespaced pod gets: the kubelet's
// default idsPerPod, enough for images whose files belong to ids up to
// 65535.
const PodIDs = 65536

// PodCapacity is how many user-namespaced pods of PodIDs ids fit in a
// namespace of nsSize ids (container ids 0 to nsSize-1). The first PodIDs
// ids are left to the pods that share the namespace's own ids, as the
// kubelet leaves them when it picks ranges (its first pod starts at
// idsPerPod).
func PodCapacity(nsSize int) int {
	if nsSize <= PodIDs {
		return 0
	}
	return (nsSize - PodIDs) / PodIDs
}

// ParseProcMap reads a /proc/PID/uid_map or gid_map: one "CONTAINERID
// HOSTID COUNT" line per mapping, fields separated by any run of spaces.
func ParseProcMap(r io.Reader) (Map, error) {
	var m Map
	var bad error
	err := eachLine(r, func(n int, line string) {
		f := strings.Fields(line)
		var v [3]int
		ok := len(f) == 3
		for i := 0; ok && i < 3; i++ {
			var err error
			v[i], err = strconv.Atoi(f[i])
			ok = err == nil && v[i] >= 0
		}
		if !ok || v[2] == 0 {
			bad = errors.Join(bad, fmt.Errorf("line %d: %q is not CONTAINERID HOSTID COUNT: %w", n, line, errdefs.ErrInvalidArgument))
			return
		}
		m = append(m, Mapping{ContainerID: v[0], HostID: v[1], Count: v[2]})
	})
	if err != nil {
		return nil, err
	}
	return m, bad
}

// Covers reports whether every id from start to start+count-1 is a
// container id of m: ids a child namespace of m's namespace may map.
func (m Map) Covers(start, count int) bool {
	_, ok := m.Carve(0, start, count)
	return ok
}

// Carve lays out a child namespace's mapping of count ids from
// containerID onwards onto m's container ids start to start+count-1, one
// line per line of m they cross: the kernel takes a child's line only
// when it lies inside one line of the parent's map. ok is false when m
// does not cover every id of the range.
func (m Map) Carve(containerID, start, count int) (out Map, ok bool) {
	if count <= 0 || start < 0 {
		return nil, false
	}
	sorted := slices.Clone(m)
	slices.SortFunc(sorted, func(a, b Mapping) int { return a.ContainerID - b.ContainerID })
	next, end := start, start+count
	for _, l := range sorted {
		if next >= end {
			break
		}
		lEnd := l.ContainerID + l.Count
		if next < l.ContainerID || next >= lEnd {
			continue
		}
		n := min(end, lEnd) - next
		out = append(out, Mapping{ContainerID: containerID + next - start, HostID: next, Count: n})
		next += n
	}
	if next < end {
		return nil, false
	}
	return out, true
}
