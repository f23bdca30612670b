package sandbox

import (
	"fmt"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Resolve returns a copy of the record of the pod whose id is prefix or,
// failing that, the one pod whose id starts with it. An unknown id (or a
// pod still being created) wraps errdefs.ErrNotFound; an empty or
// ambiguous one errdefs.ErrInvalidArgument.
func (m *Manager) Resolve(prefix string) (*Sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, err := m.ids.Resolve(prefix)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox %w", err)
	}
	sb := m.sandboxes[id]
	if sb == nil || sb.State == stateCreating {
		return nil, fmt.Errorf("pod sandbox %s: %w", errdefs.Quote(id), errdefs.ErrNotFound)
	}
	return sb.clone(), nil
}
