package doctor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbeOverlay runs the real overlay probe in a scratch directory: this
// project's machines (kernel 6.x, ext4) mount overlay both as root and in a
// user namespace, so any error here is a bug in the probe.
func TestProbeOverlay(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	modes := []bool{false}
	if os.Getuid() == 0 {
		modes = append(modes, true) // rootful mode is root's only
	}
	for _, rootful := range modes {
		base := t.TempDir()
		if err := probeOverlay(filepath.Join(base, "not", "yet", "made"), rootful); err != nil {
			t.Errorf("probeOverlay(rootful=%v): %v", rootful, err)
		}
		left, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Errorf("probeOverlay(rootful=%v) left %v behind in %s", rootful, left, base)
		}
	}
}

func TestProbeVersion(t *testing.T) {
	tests := []struct {
		path    string
		want    string // prefix of the first line
		wantErr bool
	}{
		{path: "/bin/true", want: "true (GNU coreutils)"},
		{path: "/bin/false", wantErr: true}, // false fails even for --version
		{path: "/nonexistent/runc", wantErr: true},
	}
	for _, tt := range tests {
		got, err := probeVersion(tt.path)
		if (err != nil) != tt.wantErr {
			t.Errorf("probeVersion(%s) error = %v, wantErr %v", tt.path, err, tt.wantErr)
		}
		if !strings.HasPrefix(got, tt.want) || strings.Contains(got, "\n") {
			t.Errorf("probeVersion(%s) = %q, want one line starting %q", tt.path, got, tt.want)
		}
	}
}

func TestNearestDir(t *testing.T) {
	base := t.TempDir()
	tests := map[string]string{
		base:                                base,
		filepath.Join(base, "a", "b"):       base,
		filepath.Join(base, "..", "x", "y"): filepath.Dir(base),
	}
	for in, want := range tests {
		if got := nearestDir(in); got != want {
			t.Errorf("nearestDir(%s) = %s, want %s", in, got, want)
		}
	}
}
