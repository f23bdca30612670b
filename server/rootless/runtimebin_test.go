package rootless

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadOnlyBinary: the runtime's binary is bound read-only (what makes
// crun skip its memfd copy), runs, and cannot be written through the
// bind; a second call (a restarted daemon in the same namespace) replaces
// the bind. Runs as root in a child test process with a mount namespace
// of its own (the whole process: ReadOnlyBinary reads /proc/self), so
// nothing reaches the machine's.
func TestReadOnlyBinary(t *testing.T) {
	if os.Getenv(readOnlyBinaryChild) == "1" {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatal(err)
		}
		checkReadOnlyBinary(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run", "^TestReadOnlyBinary$", "-test.v")
	cmd.Env = append(os.Environ(), readOnlyBinaryChild+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestReadOnlyBinary") {
		t.Fatalf("in a mount namespace of its own: %v\n%s", err, out)
	}
}

const readOnlyBinaryChild = "CRIB_TEST_READONLY_BINARY_CHILD"

func checkReadOnlyBinary(t *testing.T) {
	src, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true binary")
	}
	src, _ = filepath.EvalSymlinks(src)
	dir := filepath.Join(t.TempDir(), "bin", "crun")
	for round := 0; round < 2; round++ {
		got, err := ReadOnlyBinary(dir, src)
		if err != nil {
			t.Errorf("round %d: %v", round, err)
			return
		}
		t.Cleanup(func() { unix.Unmount(got, unix.MNT_DETACH) })
		if want := filepath.Join(dir, filepath.Base(src)); got != want {
			t.Errorf("path %s, want %s", got, want)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(got, &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("round %d: %s is not on a read-only mount (flags %#x, %v)", round, got, st.Flags, err)
		}
		a, _ := os.ReadFile(src)
		b, err := os.ReadFile(got)
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("round %d: the bound file differs from %s (%v)", round, src, err)
		}
		if f, err := os.OpenFile(got, os.O_WRONLY, 0); !errors.Is(err, unix.EROFS) {
			if f != nil {
				f.Close()
			}
			t.Errorf("round %d: opening the bind for writing: %v, want EROFS", round, err)
		}
		if err := exec.Command(got).Run(); err != nil {
			t.Errorf("round %d: running %s: %v", round, got, err)
		}
		if n := mountCount(t, got); n != 1 {
			t.Errorf("round %d: %d mounts at %s, want 1", round, n, got)
		}
	}
}

func mountCount(t *testing.T, path string) int {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte(" "+path+" "))
}
