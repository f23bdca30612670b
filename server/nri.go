package server

import (
	"context"
	"log/slog"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/cri"
	"github.com/crib-dev/crib/nri"
)

// newNRI builds the NRI plugin host ([nri] in crib.toml; nil when off).
// It runs in the daemon, inside crib's namespaces, so the plugins it
// starts share them and run as the user that runs crib. rs is filled in
// once the RuntimeService exists, before the host starts.
func newNRI(o Options, rootless bool, rs **cri.RuntimeService, log *slog.Logger) (*nri.Host, error) {
	return nri.New(nri.Options{
		Config:         o.Config.NRI,
		RuntimeName:    "crib",
		RuntimeVersion: o.Version,
		Rootless:       rootless,
		Log:            log,
		State:          func() ([]nri.Pod, []nri.Container) { return (*rs).NRIState() },
		Update: func(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
			return (*rs).NRIUpdate(ctx, id, r)
		},
	})
}
