package idindex

import (
	"errors"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

func TestResolve(t *testing.T) {
	var x Index
	for _, id := range []string{"abc123", "abd456", "b77", "abc", "ffff", "b77", "gone1"} {
		x.Add(id)
	}
	x.Remove("gone1")
	x.Remove("never-added")
	if x.Len() != 5 {
		t.Fatalf("Len = %d, want 5 (a duplicate kept once, the removed id gone)", x.Len())
	}
	tests := []struct {
		name   string
		prefix string
		want   string
		err    error
	}{
		{"whole id", "abc123", "abc123", nil},
		{"unique prefix", "abd", "abd456", nil},
		{"one-letter prefix", "b", "b77", nil},
		{"exact id wins over a longer one it prefixes", "abc", "abc", nil},
		{"the longer one by its own prefix", "abc1", "abc123", nil},
		{"last id by prefix", "f", "ffff", nil},
		{"id added twice", "b7", "b77", nil},
		{"ambiguous", "ab", "", errdefs.ErrInvalidArgument},
		{"ambiguous one letter", "a", "", errdefs.ErrInvalidArgument},
		{"empty", "", "", errdefs.ErrInvalidArgument},
		{"none: between two ids", "abe", "", errdefs.ErrNotFound},
		{"none: after the last", "zz", "", errdefs.ErrNotFound},
		{"none: before the first", "0", "", errdefs.ErrNotFound},
		{"none: one byte longer than an id", "abd4567", "", errdefs.ErrNotFound},
		{"none: removed", "gone", "", errdefs.ErrNotFound},
		{"none: case matters", "A", "", errdefs.ErrNotFound},
	}
	for _, tc := range tests {
		got, err := x.Resolve(tc.prefix)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: Resolve(%q) = %q, %v; want %q, %v", tc.name, tc.prefix, got, err, tc.want, tc.err)
		}
	}
}

// TestResolveAfterDelete: removing one of two ids that share a prefix
// makes the prefix unique; removing both makes it unknown.
func TestResolveAfterDelete(t *testing.T) {
	var x Index
	x.Add("pod-aaa")
	x.Add("pod-aab")
	if _, err := x.Resolve("pod-aa"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("two ids share the prefix: got %v, want an ambiguity error", err)
	}
	x.Remove("pod-aaa")
	if got, err := x.Resolve("pod-aa"); err != nil || got != "pod-aab" {
		t.Fatalf("after removing one: got %q, %v; want pod-aab", got, err)
	}
	x.Remove("pod-aab")
	if _, err := x.Resolve("pod-aa"); !errdefs.IsNotFound(err) {
		t.Fatalf("after removing both: got %v, want not found", err)
	}
}
