package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

func TestCheckLogInside(t *testing.T) {
	base := t.TempDir()
	logs := filepath.Join(base, "logs")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{logs, outside, filepath.Join(logs, "ctr")} {
		os.MkdirAll(d, 0o755)
	}
	os.Symlink(outside, filepath.Join(logs, "escape"))
	os.Symlink(filepath.Join(outside, "f"), filepath.Join(logs, "link.log"))
	tests := []struct {
		name, dir, path string
		bad             bool
	}{
		{"plain", logs, filepath.Join(logs, "c.log"), false},
		{"subdir", logs, filepath.Join(logs, "ctr", "0.log"), false},
		{"subdir made later", logs, filepath.Join(logs, "new", "0.log"), false},
		{"through a symlinked dir", logs, filepath.Join(logs, "escape", "0.log"), true},
		{"log file is a symlink", logs, filepath.Join(logs, "link.log"), true},
		{"no directory given", "", filepath.Join(outside, "x.log"), false},
		{"directory not made yet", filepath.Join(base, "later"), filepath.Join(base, "later", "x.log"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLogInside(tc.dir, tc.path)
			if tc.bad != (err != nil) {
				t.Fatalf("err = %v, want bad=%v", err, tc.bad)
			}
			if err != nil && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
		})
	}
}
