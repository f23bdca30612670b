// Package idindex resolves an object id from the id itself or a unique
// prefix of it, as crictl lets operators type short ids. The index is a
// sorted slice, so a lookup is a binary search rather than a scan of every
// record; the ids that share a prefix sit next to each other.
//
// An Index does no locking of its own: its owner keeps it under the lock
// that guards the records it indexes, so the two never disagree.
package idindex

import (
	"fmt"
	"slices"
	"strings"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Index is a set of ids kept sorted. The zero value is empty and ready.
type Index struct {
	ids []string
}

// Add puts id in the index; adding an id twice keeps one copy.
func (x *Index) Add(id string) {
	i, found := slices.BinarySearch(x.ids, id)
	if !found {
		x.ids = slices.Insert(x.ids, i, id)
	}
}

// Remove takes id out of the index; removing an absent id does nothing.
func (x *Index) Remove(id string) {
	if i, found := slices.BinarySearch(x.ids, id); found {
		x.ids = slices.Delete(x.ids, i, i+1)
	}
}

// Len is how many ids the index holds.
func (x *Index) Len() int { return len(x.ids) }

// Resolve returns the id that is prefix or, failing that, the one id
// that starts with prefix. No match wraps errdefs.ErrNotFound; a prefix
// two ids share, or an empty one, wraps errdefs.ErrInvalidArgument, as no
// retry of the same request can succeed.
func (x *Index) Resolve(prefix string) (string, error) {
	if prefix == "" {
		return "", fmt.Errorf("id is empty: %w", errdefs.ErrInvalidArgument)
	}
	// The first id not less than prefix is prefix itself when present,
	// else the smallest id that starts with it, if any does.
	i, found := slices.BinarySearch(x.ids, prefix)
	if found {
		return prefix, nil
	}
	if i == len(x.ids) || !strings.HasPrefix(x.ids[i], prefix) {
		return "", fmt.Errorf("%s: %w", errdefs.Quote(prefix), errdefs.ErrNotFound)
	}
	if i+1 < len(x.ids) && strings.HasPrefix(x.ids[i+1], prefix) {
		return "", fmt.Errorf("id prefix %s is ambiguous: %w", errdefs.Quote(prefix), errdefs.ErrInvalidArgument)
	}
	return x.ids[i], nil
}
