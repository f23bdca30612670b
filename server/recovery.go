package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/server/doctor"
	"github.com/crib-dev/crib/storage"
)

// Start-up recovery across the packages: runtime and sandbox reconcile
// their own records; what only the server can see is a container
// filesystem that no container record owns — CreateContainer killed
// between making the filesystem and saving the container's record, or
// RemoveContainer killed between removing the record and the filesystem.

// removeOrphanRootfs deletes the container filesystems that no container
// record owns. It runs before the gRPC server starts, so no
// CreateContainer can be between its two steps.
func removeOrphanRootfs(store *storage.Store, containers *runtime.Manager) (removed []string, errs []error) {
	fss, err := store.ListContainers()
	if err != nil {
		return nil, []error{err}
	}
	for _, fs := range fss {
		if _, err := containers.Get(fs.ID); err == nil {
			continue
		}
		if err := store.DeleteContainer(fs.ID); err != nil {
			errs = append(errs, fmt.Errorf("removing the orphaned filesystem of container %s: %w", fs.ID, err))
			continue
		}
		removed = append(removed, fs.ID)
	}
	return removed, errs
}

// recoveryRecord gathers the reports for `crib doctor`.
func recoveryRecord(c runtime.RecoverReport, p sandbox.RecoverReport, rootfs []string, errs []error) doctor.Recovery {
	r := doctor.Recovery{
		At:                   time.Now(),
		ContainersReattached: c.Reattached,
		ContainersExited:     c.Exited,
		ContainersLost:       c.Lost,
		ContainersCleaned:    c.Cleaned,
		PodsReady:            p.Ready,
		PodsNotReady:         p.NotReady,
		PodsCleaned:          p.Removed,
		RootfsCleaned:        rootfs,
	}
	for _, err := range errs {
		if err != nil {
			r.Errors = append(r.Errors, err.Error())
		}
	}
	return r
}

// writeRecovery records what recovery did in the runroot, where `crib
// doctor` reads it; failing to write it must not stop crib.
func writeRecovery(runRoot string, r doctor.Recovery, log *slog.Logger) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err == nil {
		path := filepath.Join(runRoot, doctor.RecoveryFileName)
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, data, 0o600); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		log.Warn("recording the start-up recovery for `crib doctor`", "err", err)
	}
}
