package runtime

import (
	"fmt"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Resolve returns a copy of the record of the container whose id is
// prefix or, failing that, the one container whose id starts with it. An
// unknown id wraps errdefs.ErrNotFound; an empty or ambiguous one
// errdefs.ErrInvalidArgument.
func (m *Manager) Resolve(prefix string) (*Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, err := m.ids.Resolve(prefix)
	if err != nil {
		return nil, fmt.Errorf("container %w", err)
	}
	e := m.containers[id]
	if e == nil || e.c == nil {
		// The index and the map change together under mu.
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return e.c.clone(), nil
}
