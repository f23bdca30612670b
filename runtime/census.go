package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/atomicfile"
	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/procfs"
)

// The census ends every process of a container, with or without a cgroup.
//
// Why: `runc kill --all` finds a container's processes through its
// cgroup; without one (crib unconfined) it signals the init only. A
// container with its own PID namespace loses every process with its init,
// but a container in the node's PID namespace does not: what its init
// forked (a daemon that double-forked, an exec'd shell's children) would
// outlive the container, its record and its pod, and nothing would ever
// stop it.
//
// Every process of a container is in the container's mount namespace:
// the runtime makes one for the init, and exec joins it. At create crib
// records that namespace's identity and the container root's, in
// census.json in the bundle (the runroot, a tmpfs: a reboot empties it,
// as it ends the namespaces). Stop, Remove, the rollback of a create and
// recovery then list the processes in that namespace through /proc and
// SIGKILL them until none is left.
//
// A freed namespace's inode number can be handed to a new namespace.
// Where the kernel gives mount namespaces a 64-bit id (Linux 6.11), never
// reused until reboot, the census compares that too. Without one, it
// trusts a namespace only while a process in it still has the container's
// root: the namespace is then the container's (its root is mounted
// there). The census keys on the namespace, not on the root: two
// containers may share one root directory (tests do), never one mount
// namespace. Known limit: a process that unshares its own mount
// namespace (it needs CAP_SYS_ADMIN) leaves the census; the cgroup, when
// there is one, still holds it.

const censusFile = "census.json"

// censusKey identifies a container's processes.
type censusKey struct {
	MountNS procfs.FileID `json:"mount_ns"`
	// MountNSID is the namespace's kernel id; 0 where there is none.
	MountNSID uint64        `json:"mount_ns_id,omitempty"`
	Root      procfs.FileID `json:"root"`
}

// censusGrace bounds how long the census waits for SIGKILLed processes to
// die (a process in uninterruptible sleep may take a while).
const censusGrace = 10 * time.Second

// recordCensus reads the identity of the init's mount namespace and root
// and writes it into the bundle. The init is waiting to exec the command,
// so both are already the container's. A container in crib's own mount
// namespace (no OCI runtime makes one, but a spec could name it) gets no
// census: it would end crib's processes.
func recordCensus(bundle string, pid int) error {
	ns, err := procfs.Namespace(pid, "mnt")
	if err != nil {
		return fmt.Errorf("reading the mount namespace of the container's init %d: %w", pid, err)
	}
	if own, err := procfs.Namespace(os.Getpid(), "mnt"); err != nil || own == ns {
		return err
	}
	root, err := procfs.RootDir(pid)
	if err != nil {
		return fmt.Errorf("reading the root of the container's init %d: %w", pid, err)
	}
	k := censusKey{MountNS: ns, Root: root}
	if k.MountNSID, err = procfs.MountNamespaceID(pid); err != nil && !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("reading the mount namespace id of the container's init %d: %w", pid, err)
	}
	data, err := json.Marshal(k)
	if err != nil {
		return err
	}
	return atomicfile.WriteVolatile(filepath.Join(bundle, censusFile), data, 0o600)
}

// readCensus reads the bundle's census key; ok is false when there is none
// (a container made by an older crib, or a bundle already removed).
func readCensus(bundle string) (k censusKey, ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(bundle, censusFile))
	if errors.Is(err, os.ErrNotExist) {
		return censusKey{}, false, nil
	}
	if err != nil {
		return censusKey{}, false, err
	}
	if len(data) == 0 {
		// Written without a sync (the runroot is volatile): only a power
		// loss leaves it empty, and after one no process of it is left.
		return censusKey{}, false, nil
	}
	if err := json.Unmarshal(data, &k); err != nil {
		return censusKey{}, false, fmt.Errorf("decoding %s: %w", filepath.Join(bundle, censusFile), err)
	}
	return k, !k.MountNS.IsZero(), nil
}

// members lists the live processes in the key's mount namespace, or none
// when the namespace is gone or its number now names another one (see
// above). Zombies have left every namespace and are never listed.
func (k censusKey) members() ([]int, error) {
	pids, err := procfs.Pids()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var in []int
	trusted := k.MountNSID != 0
	for _, pid := range pids {
		if pid == self || !k.holds(pid) {
			continue
		}
		in = append(in, pid)
		if !trusted {
			root, err := procfs.RootDir(pid)
			trusted = err == nil && root == k.Root
		}
	}
	if !trusted {
		return nil, nil
	}
	return in, nil
}

// holds reports whether pid is in the key's mount namespace, by its
// number and, where the kernel has them, its id.
func (k censusKey) holds(pid int) bool {
	if ns, err := procfs.Namespace(pid, "mnt"); err != nil || ns != k.MountNS {
		return false
	}
	if k.MountNSID == 0 {
		return true
	}
	id, err := procfs.MountNamespaceID(pid)
	return err == nil && id == k.MountNSID
}

// kill SIGKILLs pid if it is still in the key's namespace. Through a
// pidfd the check and the signal name the same process even if pid is
// reused in between; kernels without pidfds get a plain kill.
func (k censusKey) kill(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) && k.holds(pid) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		return
	}
	defer unix.Close(fd)
	if k.holds(pid) {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
}

// endAll SIGKILLs every process of the key until none is left, giving up
// after grace with an error naming what survived.
func (k censusKey) endAll(ctx context.Context, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	wait := 5 * time.Millisecond
	for {
		pids, err := k.members()
		if err != nil {
			return fmt.Errorf("listing processes: %w", err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			slices.Sort(pids)
			return fmt.Errorf("%w: %d processes (%v) still run in the container's mount namespace %s after SIGKILL",
				errdefs.ErrUnavailable, len(pids), pids, grace)
		}
		for _, pid := range pids {
			k.kill(pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// endProcesses ends every process of container id that its census finds,
// and kicks the reaper for the orphans among them.
func (m *Manager) endProcesses(ctx context.Context, id string) error {
	k, ok, err := readCensus(m.files(id).bundle)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if !ok {
		return nil
	}
	defer m.reaper.Kick()
	if err := k.endAll(ctx, censusGrace); err != nil {
		return fmt.Errorf("ending the processes of container %s: %w", id, err)
	}
	return nil
}
