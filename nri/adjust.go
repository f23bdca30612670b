package nri

import (
	"fmt"

	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	rgen "github.com/opencontainers/runtime-tools/generate"

	"github.com/crib-dev/crib/internal/errdefs"
)

// adjust applies the plugins' merged adjustment to spec in place, with
// the nri module's own spec generator so that each field is applied as
// the peers apply it.
func adjust(spec *specs.Spec, adj *api.ContainerAdjustment, rootless bool) error {
	if adj == nil {
		return nil
	}
	base := rgen.NewFromSpec(spec)
	g := nrigen.SpecGenerator(&base,
		nrigen.WithBlockIOResolver(func(class string) (*specs.LinuxBlockIO, error) {
			return nil, fmt.Errorf("block I/O class %q: crib has no classes: %w", class, errdefs.ErrInvalidArgument)
		}),
		nrigen.WithRdtResolver(func(class string) (*specs.LinuxIntelRdt, error) {
			return nil, fmt.Errorf("RDT class %q: crib has no classes: %w", class, errdefs.ErrInvalidArgument)
		}),
		nrigen.WithCDIDeviceInjector(func(_ *specs.Spec, devs []string) error {
			return fmt.Errorf("CDI devices %v: %w", devs, errdefs.ErrUnimplemented)
		}),
	)
	if err := g.Adjust(adj); err != nil {
		return fmt.Errorf("applying the plugins' adjustment: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if rootless && spec.Linux != nil && spec.Linux.CgroupsPath == "" {
		// Rootless without a cgroup crib's own spec carries no limits
		// (runtime's setResources) and the runtime could apply none: the
		// container runs unconfined, whoever asked for limits.
		spec.Linux.Resources = nil
	}
	if rootless && spec.Linux != nil && spec.Linux.Resources != nil {
		// As for CRI devices (runtime/spec_devices.go): rootless, the
		// runtime bind-mounts device nodes and the device cgroup is not
		// crib's to program, so the allow rules that came with a
		// plugin's devices are dropped; access is the node's own.
		spec.Linux.Resources.Devices = nil
	}
	return nil
}
