package sandbox

import (
	"errors"
	"os"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

// TestResolve: the pods a restarted crib loads are in the id index, a pod
// still being created is not resolvable, and a forgotten pod leaves it.
func TestResolve(t *testing.T) {
	opts := testOptions(t)
	first, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range []*Sandbox{
		{ID: "aaa111", State: StateReady, Config: podConfig("a1")},
		{ID: "aaa222", State: StateNotReady, Config: podConfig("a2")},
		{ID: "bbb333", State: StateReady, Config: podConfig("b3")},
		{ID: "ccc444", State: stateCreating, Config: podConfig("c4")},
	} {
		if err := os.MkdirAll(first.recordDir(sb.ID), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := first.save(sb); err != nil {
			t.Fatal(err)
		}
	}
	m, err := New(opts) // a restart: loads the records
	if err != nil {
		t.Fatal(err)
	}
	check := func(prefix, want string, wantErr error) {
		t.Helper()
		sb, err := m.Resolve(prefix)
		if !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
			t.Errorf("Resolve(%q): error %v, want %v", prefix, err, wantErr)
			return
		}
		if err == nil && sb.ID != want {
			t.Errorf("Resolve(%q) = %s, want %s", prefix, sb.ID, want)
		}
	}
	check("aaa111", "aaa111", nil)
	check("b", "bbb333", nil)
	check("aaa2", "aaa222", nil)
	check("aaa", "", errdefs.ErrInvalidArgument)
	check("ddd", "", errdefs.ErrNotFound)
	check("ccc", "", errdefs.ErrNotFound) // being created
	check("", "", errdefs.ErrInvalidArgument)

	m.forget("aaa111")
	check("aaa", "aaa222", nil)
	check("aaa111", "", errdefs.ErrNotFound)
}
