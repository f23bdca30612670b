package server

import (
	"log/slog"

	"github.com/crib-dev/crib/nri"
)

// newNRI builds the NRI plugin host ([nri] in crib.toml; nil when off);
// the CRI RuntimeService binds it to its pods and containers, and the
// daemon starts it once that is done. It runs in the daemon, inside
// crib's namespaces, so the plugins it starts share them and run as the
// user that runs crib.
func newNRI(o Options, rootless bool, log *slog.Logger) (*nri.Host, error) {
	if !o.Config.NRI.Enable {
		return nil, nil
	}
	if err := nri.ConfigureLibrary(o.Config.NRI, log); err != nil {
		return nil, err
	}
	return nri.New(nri.Options{
		Config:         o.Config.NRI,
		RuntimeName:    "crib",
		RuntimeVersion: o.Version,
		Rootless:       rootless,
		Log:            log,
	})
}
