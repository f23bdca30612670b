package procfs

import (
	"errors"
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       Stat
		err        bool
	}{
		{
			name: "plain",
			line: "42 (sleep) S 7 42 42 0 -1 4194560 120 11 3 13 5 6 7 8 20 0 1 0 9999 2000000 55 18446744073709551615",
			want: Stat{State: 'S', Ppid: 7, Minflt: 120, Cminflt: 11, Majflt: 3, Cmajflt: 13, Utime: 5, Stime: 6, Cutime: 7, Cstime: 8, Starttime: 9999, RSSPages: 55, Comm: "sleep"},
		},
		{
			name: "comm with spaces and parentheses",
			line: "9 (a) b (c)) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0 0",
			want: Stat{State: 'Z', Ppid: 1, Starttime: 77, Comm: "a) b (c)"},
		},
		{
			name: "comm with parentheses and a space",
			line: "1234 (we(i) rd) S 42 1234 1234 0 -1 4194560 150 0 3 0 7 9 2 1 20 0 1 0 5555 1000000 321 18446744073709551615",
			want: Stat{State: 'S', Ppid: 42, Minflt: 150, Majflt: 3, Utime: 7, Stime: 9, Cutime: 2, Cstime: 1, Starttime: 5555, RSSPages: 321, Comm: "we(i) rd"},
		},
		{name: "no parentheses", line: "9 a S 1", err: true},
		{name: "short", line: "9 (a) S 1 2 3", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tc.line))
			if tc.err {
				if err == nil {
					t.Fatalf("ParseStat(%q) = %+v, want an error", tc.line, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseStat(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
			}
		})
	}
}

func TestSelf(t *testing.T) {
	pids, err := Pids()
	if err != nil || !slices.Contains(pids, os.Getpid()) {
		t.Fatalf("Pids() = %d pids, %v; own pid %d missing", len(pids), err, os.Getpid())
	}
	st, err := ReadStat(os.Getpid())
	if err != nil || st.Ppid != os.Getppid() || st.State != 'R' {
		t.Fatalf("ReadStat(self) = %+v, %v; want running with ppid %d", st, err, os.Getppid())
	}
	mnt, err := Namespace(os.Getpid(), "mnt")
	if err != nil || mnt.IsZero() {
		t.Fatalf("Namespace(self, mnt) = %+v, %v", mnt, err)
	}
	parent, err := Namespace(os.Getppid(), "mnt")
	if err != nil || parent != mnt {
		t.Fatalf("parent's mount namespace %+v (%v), want the same as ours %+v", parent, err, mnt)
	}
	root, err := RootDir(os.Getpid())
	want, _ := statID("/")
	if err != nil || root != want {
		t.Fatalf("RootDir(self) = %+v, %v; want %+v", root, err, want)
	}
}

// TestMountNamespaceID: where the kernel gives ids, a process and its
// parent in one mount namespace share one, and it is not zero.
func TestMountNamespaceID(t *testing.T) {
	id, err := MountNamespaceID(os.Getpid())
	if errors.Is(err, unix.ENOTTY) {
		t.Skip("the kernel gives mount namespaces no id (before 6.11)")
	}
	if err != nil || id == 0 {
		t.Fatalf("MountNamespaceID(self) = %d, %v", id, err)
	}
	if parent, err := MountNamespaceID(os.Getppid()); err != nil || parent != id {
		t.Fatalf("parent's id %d (%v), want ours %d", parent, err, id)
	}
}
