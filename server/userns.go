package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/runtime"
)

// usernsSupport decides whether pods may have their own user namespace
// (hostUsers: false), and says why not: crib's own namespace must have
// room for at least one pod's 65536 ids beyond its first 65536. (Root file
// systems work on every storage driver: storage chowns a copy of the
// image for the pod's ids.)
func usernsSupport() (bool, string) {
	size := -1
	for _, f := range []string{"/proc/self/uid_map", "/proc/self/gid_map"} {
		n, err := idMapSize(f)
		if err != nil {
			return false, err.Error()
		}
		if size < 0 || n < size {
			size = n
		}
	}
	pods := idmap.PodCapacity(size)
	if pods == 0 {
		return false, fmt.Sprintf("crib's user namespace has %d ids, no room for a pod's %d beyond the first %d: give crib's user more subordinate ids (scripts/host-setup.sh; crib doctor)", size, idmap.PodIDs, idmap.PodIDs)
	}
	return true, fmt.Sprintf("room for %d pods of %d ids in crib's %d", pods, idmap.PodIDs, size)
}

func idMapSize(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	m, err := idmap.ParseProcMap(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return m.Size(), nil
}

// usernsStateInfo is crib's configuration as Status info shows it, plus
// "stateDir": the tmpfs crib binds user-namespaced containers' root file
// systems under (runtime.UsernsRootDir), made now, so a client can probe
// it as containerd's state directory is probed (critest tries an
// idmapped mount of stateDir's parent before its user-namespace specs).
func usernsStateInfo(cfg any, runRoot string, supported bool, log *slog.Logger) string {
	out := mustJSON(cfg)
	if !supported {
		return out
	}
	if err := runtime.EnsureUsernsRoot(runRoot); err != nil {
		log.Warn("preparing the user-namespace root directory", "err", err)
		return out
	}
	var m map[string]any
	if json.Unmarshal([]byte(out), &m) != nil {
		return out
	}
	m["stateDir"] = filepath.Join(runtime.UsernsRootDir(runRoot), "state")
	return mustJSON(m)
}
