package golden

import (
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that remembers failures instead of failing.
type recorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Errorf(format string, args ...any) { r.failed, r.msg = true, format }
func (r *recorder) Fatalf(format string, args ...any) { r.failed, r.msg = true, format }
func (r *recorder) Fatal(args ...any)                 { r.failed = true }

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "out.golden")
	for _, tc := range []struct {
		name     string
		update   bool
		got      string
		wantFail bool
	}{
		{"missing file fails", false, "a\n", true},
		{"-update writes it, creating the directory", true, "a\nb\n", false},
		{"same content passes", false, "a\nb\n", false},
		{"different content fails", false, "a\nc\n", true},
		{"-update accepts the change", true, "a\nc\n", false},
		{"then it passes", false, "a\nc\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := *update
			*update = tc.update
			defer func() { *update = old }()
			r := &recorder{TB: t}
			Check(r, path, []byte(tc.got))
			if r.failed != tc.wantFail {
				t.Errorf("failed = %v (%s), want %v", r.failed, r.msg, tc.wantFail)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	d := Diff("a\nb\nc", "a\nx\nc\nd")
	if !strings.Contains(d, "line 2:") || !strings.Contains(d, "line 4:") || strings.Contains(d, "line 1:") || strings.Contains(d, "line 3:") {
		t.Errorf("Diff:\n%s", d)
	}
}
