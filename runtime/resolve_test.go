package runtime

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

// TestResolveLoadedRecords: the records a restarted crib loads are in the
// id index, so short ids work at once; unknown and shared prefixes fail
// with their own kinds.
func TestResolveLoadedRecords(t *testing.T) {
	st := store{dir: t.TempDir()}
	for _, id := range []string{"aaa111", "aaa222", "bbb333"} {
		if err := st.save(&Container{ID: id, SandboxID: "pod", State: StateExited}); err != nil {
			t.Fatal(err)
		}
	}
	m := &Manager{log: slog.Default(), store: st, containers: map[string]*entry{}}
	if err := m.load(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix, want string
		err          error
	}{
		{"aaa111", "aaa111", nil},
		{"b", "bbb333", nil},
		{"aaa2", "aaa222", nil},
		{"aaa", "", errdefs.ErrInvalidArgument},
		{"ccc", "", errdefs.ErrNotFound},
		{"", "", errdefs.ErrInvalidArgument},
	}
	for _, tc := range tests {
		c, err := m.Resolve(tc.prefix)
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("Resolve(%q): error %v, want %v", tc.prefix, err, tc.err)
			continue
		}
		if err == nil && c.ID != tc.want {
			t.Errorf("Resolve(%q) = %s, want %s", tc.prefix, c.ID, tc.want)
		}
	}
}
