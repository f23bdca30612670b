// Command crib-hostside is the host-side parent of rootless crib: `crib
// serve` executes it once crib's namespaces and cgroups are ready, and it
// runs the daemon in them, dials and forwards host ports for it, and
// relays signals until it exits (server/rootless.RunParent). It links
// only that package and a few small ones, so the process that lives as
// long as crib maps a small binary. It is not run by hand.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/crib-dev/crib/internal/logsetup"
	"github.com/crib-dev/crib/internal/sdnotify"
	"github.com/crib-dev/crib/server/rootless"
)

// version is set at build time with -ldflags "-X main.version=...", as
// crib's is.
var version = "0.1.0-dev"

func main() {
	os.Exit(run())
}

func run() int {
	start, err := rootless.TakeParentHandoff()
	if err != nil {
		fmt.Fprintln(os.Stderr, "crib-hostside:", err)
		return 2
	}
	o := start.Options
	o.Logger = logsetup.New(o.Config, os.Stderr, logsetup.StderrIsJournal())
	if start.Handoff.Version != version {
		o.Logger.Warn("crib-hostside and crib are of different builds; install both from one (make install)",
			"crib", start.Handoff.Version, "crib-hostside", version)
	}
	notify := sdnotify.Notifier{Socket: start.Handoff.NotifySocket, Log: o.Logger}
	o.Ready = func() { notify.Ready("serving CRI on " + o.Config.Listen) }
	o.Stopping = notify.Stopping
	if err := rootless.RunParent(context.Background(), o); err != nil {
		var exit *rootless.ExitCodeError
		if errors.As(err, &exit) {
			return exit.Code
		}
		fmt.Fprintln(os.Stderr, "crib:", err)
		return 1
	}
	return 0
}
