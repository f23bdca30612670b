// Package procfs reads what crib needs from /proc: the list of processes,
// a process's stat line, and the identity of its namespaces and root. It
// only reads; signalling and waiting belong to the packages that own the
// processes.
package procfs

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Root is where proc is mounted; tests of parsers need no other.
const Root = "/proc"

// Pids lists the processes visible in the calling process's /proc (the
// PID namespace that proc was mounted for).
func Pids() ([]int, error) {
	d, err := os.Open(Root)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Stat is the part of /proc/PID/stat crib reads.
type Stat struct {
	State     byte
	Ppid      int
	Minflt    uint64
	Cminflt   uint64 // reaped children's faults
	Majflt    uint64
	Cmajflt   uint64
	Utime     uint64 // clock ticks
	Stime     uint64
	Cutime    uint64 // reaped children's times
	Cstime    uint64
	Starttime uint64 // clock ticks after boot
	RSSPages  uint64
	Comm      string
}

// ErrBadStat: a stat line crib cannot read.
var ErrBadStat = errors.New("malformed /proc stat line")

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile(Root + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(data)
}

// ParseStat reads a stat line; comm may hold spaces and parentheses, so
// the fields are counted from the last ')'.
func ParseStat(data []byte) (Stat, error) {
	open, close := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || close < open {
		return Stat{}, ErrBadStat
	}
	f := strings.Fields(string(data[close+1:]))
	// f[0] is field 3 (state) of proc(5).
	if len(f) < 22 || len(f[0]) == 0 {
		return Stat{}, ErrBadStat
	}
	num := func(i int) uint64 { v, _ := strconv.ParseUint(f[i-3], 10, 64); return v }
	return Stat{
		State:     f[0][0],
		Ppid:      int(num(4)),
		Minflt:    num(10),
		Cminflt:   num(11),
		Majflt:    num(12),
		Cmajflt:   num(13),
		Utime:     num(14),
		Stime:     num(15),
		Cutime:    num(16),
		Cstime:    num(17),
		Starttime: num(22),
		RSSPages:  num(24),
		Comm:      string(data[open+1 : close]),
	}, nil
}

// FileID names a file (a namespace or a root directory) by device and
// inode, the identity stat(2) gives it.
type FileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// IsZero: no identity was read.
func (id FileID) IsZero() bool { return id == FileID{} }

// Namespace is the identity of the namespace of kind ("mnt", "pid",
// "net", "ipc", "uts", "user", "cgroup") pid is in. A zombie has no
// namespaces left: its read fails.
func Namespace(pid int, kind string) (FileID, error) {
	return statID(Root + "/" + strconv.Itoa(pid) + "/ns/" + kind)
}

// NamespaceFile is the identity of the namespace a file names: a
// /proc/PID/ns entry or a bind mount of one (a pod's pinned namespace).
func NamespaceFile(path string) (FileID, error) { return statID(path) }

// RootDir is the identity of pid's root directory as pid sees it (the
// container's root after pivot_root).
func RootDir(pid int) (FileID, error) {
	return statID(Root + "/" + strconv.Itoa(pid) + "/root")
}

func statID(path string) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return FileID{}, err
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// nsMntGetInfo is NS_MNT_GET_INFO, _IOR(0xb7, 10, struct mnt_ns_info):
// Linux 6.11 and later.
const nsMntGetInfo = 0x8010b70a

// mntNsInfo is struct mnt_ns_info.
type mntNsInfo struct {
	size     uint32
	nrMounts uint32
	id       uint64
}

// MountNamespaceID is the 64-bit id the kernel gives pid's mount
// namespace, which, unlike the namespace's inode number, is never given to
// another namespace until reboot. Kernels before 6.11 have none: the
// error is then unix.ENOTTY.
func MountNamespaceID(pid int) (uint64, error) {
	fd, err := unix.Open(Root+"/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	info := mntNsInfo{size: uint32(unsafe.Sizeof(mntNsInfo{}))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), nsMntGetInfo, uintptr(unsafe.Pointer(&info))); errno != 0 {
		return 0, errno
	}
	return info.id, nil
}

// Exited reports whether a stat line is that of a process that has
// exited: a zombie (not yet reaped) or dead.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// ErrExited: the process has exited; only its /proc entry is left.
var ErrExited = errors.New("process has exited")

// Alive reports whether pid is a process that has not exited.
func Alive(pid int) bool {
	_, err := StartTime(pid)
	return err == nil
}

// StartTime is pid's start time in clock ticks after boot, which with the
// pid names one process for the life of the machine (a later process may
// reuse the pid, never the pair). A process that is gone is an
// os.ErrNotExist error, one that has exited ErrExited.
func StartTime(pid int) (uint64, error) {
	if pid <= 0 {
		return 0, os.ErrNotExist
	}
	st, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	if st.Exited() {
		return 0, ErrExited
	}
	return st.Starttime, nil
}

// AliveSince reports whether pid is alive and still the process that
// started at start (0: any process).
func AliveSince(pid int, start uint64) bool {
	t, err := StartTime(pid)
	return err == nil && (start == 0 || t == start)
}
