// Package mountinfo reads the mount points of the calling thread's mount
// namespace from /proc/thread-self/mountinfo. It only reads; mounting and
// unmounting belong to the packages that own what is mounted.
//
// The thread's, not the process's: /proc/self is the thread group
// leader's, and a goroutine locked to a thread that entered a mount
// namespace of its own (a test, a set-up step) must see the mounts its
// own mount calls act on.
package mountinfo

import (
	"os"
	"strconv"
	"strings"
)

const path = "/proc/thread-self/mountinfo"

// Points returns every mount point, in mount order, with stacked mounts
// listed once per mount.
func Points() ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(string(data)), nil
}

// parse takes the mount point, the fifth field, of each mountinfo line.
func parse(data string) []string {
	var out []string
	for _, line := range strings.Split(data, "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			out = append(out, unescape(f[4]))
		}
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space, \011,
// \012, \134).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mount is one line of mountinfo: where, what file system, from what source.
type Mount struct {
	Point, FSType, Source string
}

// Mounts returns every mount, in mount order.
func Mounts() ([]Mount, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseMounts(string(data)), nil
}

// parseMounts reads the mount point (fifth field) and, after the "-"
// separator that ends the optional fields, the file system type and source.
func parseMounts(data string) []Mount {
	var out []Mount
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		m := Mount{Point: unescape(f[4])}
		for i := 5; i+2 < len(f); i++ {
			if f[i] == "-" {
				m.FSType, m.Source = f[i+1], unescape(f[i+2])
				break
			}
		}
		out = append(out, m)
	}
	return out
}

// Entry is one mount with the fields cgroup code needs besides Mount's:
// the directory of the file system mounted there (Root, "/" for a whole
// file system; a bind mount or a cgroup namespace's mount shows a
// subdirectory) and the super-block options (a v1 cgroup's controllers).
type Entry struct {
	Mount
	Root         string
	SuperOptions []string
}

// Entries returns the calling process's mounts in mount order.
func Entries() ([]Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseEntries(string(data)), nil
}

// parseEntries reads the root (fourth field), the mount point and, after
// the "-" separator, type, source and super-block options.
func parseEntries(data string) []Entry {
	var out []Entry
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		e := Entry{Mount: Mount{Point: unescape(f[4])}, Root: unescape(f[3])}
		for i := 5; i+3 < len(f); i++ {
			if f[i] == "-" {
				e.FSType, e.Source = f[i+1], unescape(f[i+2])
				e.SuperOptions = strings.Split(f[i+3], ",")
				break
			}
		}
		out = append(out, e)
	}
	return out
}
