package rootless

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

const copyUpHelperEnv = "CRIB_TEST_COPYUP_DIR"

// TestCopyUp copies up a directory in a private mount namespace of its
// own (the test binary re-run under unshare(1), as root) and then checks
// from outside that the host's directory was not touched.
func TestCopyUp(t *testing.T) {
	if dir := os.Getenv(copyUpHelperEnv); dir != "" {
		checkCopyUpInside(t, dir)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private mount namespace (make unit runs as root)")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "d")
	for _, d := range []string{"sub", "m/inner", "k/deep", "plain"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("host"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "sub", "x"), []byte("x"), 0o644))
	must(t, os.Symlink("f", filepath.Join(dir, "l")))

	cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run", "^TestCopyUp$", "-test.v")
	cmd.Env = append(os.Environ(), copyUpHelperEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("copy-up in a private namespace: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Fatalf("an entry made in the copy reached the host's directory (err %v)", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "f")); string(data) != "host" {
		t.Fatalf("the host's file changed: %q", data)
	}
}

// checkCopyUpInside runs in the private namespace.
func checkCopyUpInside(t *testing.T, dir string) {
	must(t, unix.Mount("tmpfs", filepath.Join(dir, "m", "inner"), "tmpfs", 0, ""))
	keep := []string{filepath.Join(dir, "k", "deep")}
	must(t, copyUp(dir, keep))

	if !CopiedUp(dir) {
		t.Fatal("copiedUp is false after copyUp")
	}
	must(t, os.WriteFile(filepath.Join(dir, "new"), []byte("mine"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "newdir"), 0o755))

	if data, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(data) != "host" {
		t.Fatalf("host file through the copy: %q, %v", data, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "l")); err != nil || target != "f" {
		t.Fatalf("symlink l: %q, %v (want the host's target f)", target, err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "sub", "x")); err != nil || string(data) != "x" {
		t.Fatalf("file in a linked sub-directory: %q, %v", data, err)
	}
	points, err := mountPoints()
	must(t, err)
	for _, tc := range []struct {
		path    string
		mounted bool
	}{
		{dir, true},
		{filepath.Join(dir, "m"), true},          // holds a mount: bound at its own path
		{filepath.Join(dir, "m", "inner"), true}, // its mount came along
		{filepath.Join(dir, "k"), true},          // leads to a kept path
		{filepath.Join(dir, "plain"), false},     // linked, no mount of its own
		{filepath.Join(dir, "sub"), false},
	} {
		if points[tc.path] != tc.mounted {
			t.Errorf("%s mounted = %v, want %v", tc.path, points[tc.path], tc.mounted)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dir, "plain")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("plain should be a link into %s: %v %v", HostEntriesDir, fi, err)
	}

	before := len(points)
	must(t, copyUp(dir, keep))
	again, err := mountPoints()
	must(t, err)
	if len(again) != before {
		t.Fatalf("a second copyUp mounted again: %d mount points, had %d", len(again), before)
	}
	must(t, copyUp(filepath.Join(dir, "does-not-exist"), nil))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
