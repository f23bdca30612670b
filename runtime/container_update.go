package runtime

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Update applies new resource limits to a running or created container and
// records them in its config.
func (m *Manager) Update(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	e, err := m.lookup(id)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	m.handleExit(id)
	c := m.snapshot(e)
	if c.State != StateRunning && c.State != StateCreated {
		return fmt.Errorf("%w: container %s is %s", errdefs.ErrFailedPrecondition, id, c.State)
	}
	if c.CgroupsPath == "" {
		return fmt.Errorf("%w: container %s has no cgroup, so its resources cannot be limited", errdefs.ErrFailedPrecondition, id)
	}
	b := &specBuilder{in: SpecInput{Host: m.host, CgroupsPath: c.CgroupsPath, Rootless: m.rootless}}
	res := &specs.LinuxResources{}
	if err := b.fillResources(res, r); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	rt, err := m.runtimeFor(c.Handler)
	if err != nil {
		return err
	}
	// A container never started has no cgroup yet: the limits go in its
	// spec, which Start hands to the runtime.
	if !c.launched() {
		m.recordResources(e, r, res)
		return nil
	}
	if err := rt.Update(ctx, id, res); err != nil {
		return fmt.Errorf("updating container %s: %w", id, err)
	}
	m.recordResources(e, r, res)
	return nil
}

// recordResources keeps the new limits in the record (ContainerStatus
// reports them) and in the bundle's spec (exec and restarts read it).
func (m *Manager) recordResources(e *entry, r *runtimeapi.LinuxContainerResources, res *specs.LinuxResources) {
	m.update(e, func(c *Container) {
		cfg := proto.Clone(c.Config).(*runtimeapi.ContainerConfig)
		if cfg.Linux == nil {
			cfg.Linux = &runtimeapi.LinuxContainerConfig{}
		}
		cfg.Linux.Resources = proto.Clone(r).(*runtimeapi.LinuxContainerResources)
		c.Config = cfg
	})
	f := m.files(e.c.ID)
	if s, err := readSpec(f.bundle); err == nil {
		s.Linux.Resources = res
		if err := writeSpec(f.bundle, s); err != nil {
			m.log.Warn("recording new limits in the bundle", "container", e.c.ID, "err", err)
		}
	}
}
