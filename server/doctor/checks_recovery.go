package doctor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"
)

// RecoveryFileName is the file, in the runroot, where the daemon records
// what its start-up recovery found and cleaned. The runroot is a tmpfs, so
// the record says what happened since the last boot; the daemon rewrites
// it on every start.
const RecoveryFileName = "recovered.json"

// Recovery is what one start of the daemon reconciled: ids of containers
// and pods by what became of them, and the leftovers it removed.
type Recovery struct {
	At                   time.Time `json:"at"`
	ContainersReattached []string  `json:"containersReattached,omitempty"`
	ContainersExited     []string  `json:"containersExited,omitempty"`
	// ContainersLost had no monitor and no exit code (a reboot or a
	// killed monitor): now exited with reason HostRestarted.
	ContainersLost []string `json:"containersLost,omitempty"`
	// ContainersCleaned are half-made containers (bundles, runtime state,
	// monitors) that no record owned.
	ContainersCleaned []string `json:"containersCleaned,omitempty"`
	PodsReady         []string `json:"podsReady,omitempty"`
	PodsNotReady      []string `json:"podsNotReady,omitempty"`
	// PodsCleaned are interrupted pod creates undone and pod state
	// (run dirs, CNI attachments, leases) that no record owned.
	PodsCleaned []string `json:"podsCleaned,omitempty"`
	// RootfsCleaned are container filesystems no container record owned.
	RootfsCleaned []string `json:"rootfsCleaned,omitempty"`
	// Errors is what recovery could not clean.
	Errors []string `json:"errors,omitempty"`
}

// Cleaned counts what recovery removed or rolled back.
func (r Recovery) Cleaned() int {
	return len(r.ContainersCleaned) + len(r.PodsCleaned) + len(r.RootfsCleaned)
}

// Summary is the one-line account `crib doctor` prints.
func (r Recovery) Summary() string {
	return fmt.Sprintf("%d container(s) re-attached, %d exited while crib was away, %d lost (marked HostRestarted); "+
		"%d pod(s) ready, %d made NotReady; cleaned: %d half-made container(s), %d pod leftover(s), %d orphaned container filesystem(s)",
		len(r.ContainersReattached), len(r.ContainersExited), len(r.ContainersLost),
		len(r.PodsReady), len(r.PodsNotReady),
		len(r.ContainersCleaned), len(r.PodsCleaned), len(r.RootfsCleaned))
}

// checkRecovery reports the last start-up recovery. It is informational:
// only what recovery could not clean makes it a warning.
func (r *run) checkRecovery() Check {
	c := Check{ID: IDRecovery, Title: "start-up recovery"}
	file := path.Join(r.cfg.RunRoot, RecoveryFileName)
	data, err := os.ReadFile(r.h.path(file))
	if errors.Is(err, fs.ErrNotExist) {
		c.Detail = "no record in " + file + ": crib has not started since boot"
		return c
	}
	if err != nil {
		c.Detail = fmt.Sprintf("cannot read %s: %v", file, err)
		return c
	}
	var rec Recovery
	if err := json.Unmarshal(data, &rec); err != nil {
		c.Detail = fmt.Sprintf("%s is unreadable: %v", file, err)
		return c
	}
	c.Detail = "last start " + rec.At.UTC().Format(time.RFC3339) + ": " + rec.Summary()
	if len(rec.Errors) > 0 {
		c.Status = Warn
		c.Detail += "; could not clean: " + strings.Join(rec.Errors, "; ")
	}
	return c
}
