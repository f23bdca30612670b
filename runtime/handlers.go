package runtime

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime/oci"
)

// Handler is one CRI runtime handler: an OCI runtime binary (runc or
// crun; package oci knows how each is driven) and the state directory it
// is given with --root.
type Handler struct {
	Name string
	// Path is the runtime binary.
	Path string
	// Root is the runtime's --root state directory; empty means
	// RunRoot/<Name>.
	Root string
	// SystemdCgroup makes the runtime and the monitor treat cgroup paths
	// as systemd "slice:prefix:name" triples.
	SystemdCgroup bool
}

// setHandlers makes each handler's runtime (Options.NewRuntime, by
// default oci.New) and picks the default.
func (m *Manager) setHandlers(o Options) error {
	newRuntime := o.NewRuntime
	if newRuntime == nil {
		newRuntime = oci.New
	}
	for _, h := range o.Handlers {
		if h.Name == "" || h.Path == "" {
			return fmt.Errorf("%w: runtime handler %+v needs a name and a path", errdefs.ErrInvalidArgument, h)
		}
		if h.Root == "" {
			h.Root = filepath.Join(m.runRoot, h.Name)
		}
		if err := os.MkdirAll(h.Root, 0o700); err != nil {
			return fmt.Errorf("runtime handler %s: %w", h.Name, err)
		}
		rt, err := newRuntime(m.ociConfig(h, o.ConmonPath))
		if err != nil {
			return fmt.Errorf("runtime handler %s: %w", h.Name, err)
		}
		m.handlers[h.Name] = h
		m.runtimes[h.Name] = rt
	}
	if m.defHandler == "" {
		m.defHandler = o.Handlers[0].Name
	}
	if _, ok := m.handlers[m.defHandler]; !ok {
		return fmt.Errorf("%w: default runtime handler %q is not configured", errdefs.ErrInvalidArgument, m.defHandler)
	}
	return nil
}

func (m *Manager) ociConfig(h Handler, conmon string) oci.Config {
	c := oci.Config{
		Name: h.Name, Path: h.Path, Root: h.Root, SystemdCgroup: h.SystemdCgroup,
		Monitor: oci.Monitor{Path: conmon, ExitDir: m.exitDir, AttachDir: m.attachDir},
	}
	if m.reaper != nil {
		c.Runner = m.reaper
	}
	return c
}

// runtimeFor returns the runtime of a handler; "" is the default.
func (m *Manager) runtimeFor(handler string) (oci.Runtime, error) {
	if handler == "" {
		handler = m.defHandler
	}
	rt, ok := m.runtimes[handler]
	if !ok {
		return nil, fmt.Errorf("%w: no runtime handler %q", errdefs.ErrNotFound, handler)
	}
	return rt, nil
}

// ownsRoot: only a runtime root inside crib's runroot is crib's alone; a
// shared one (/run/runc) holds other tools' containers.
func (m *Manager) ownsRoot(h Handler) bool {
	rel, err := filepath.Rel(m.runRoot, h.Root)
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && (len(rel) < 3 || rel[:3] != "../")
}
