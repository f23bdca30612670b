package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/internal/procfs"
)

// A pod with its own user namespace (hostUsers: false) gets it nested in
// crib's: container ids 0 to Count-1 are crib's ids HostID onwards, which
// crib, root of its own namespace, writes into the child's uid_map and
// gid_map itself. The pod's network, IPC and UTS namespaces (and its PID
// namespace when it shares one) are made by the same clone, so the pod's
// user namespace owns them: its root may configure them, crib's other
// pods and crib itself stay out of its reach.

var nsUser = nsKind{"user", unix.CLONE_NEWUSER}

// usernsPlan is the pod's mapping per kind, carved along the lines of
// crib's own map (the kernel wants each line inside one of the parent's).
type usernsPlan struct {
	uid, gid idmap.Map
}

// planUserns reads the pod's user-namespace request (cri checked its
// shape) against crib's own id space: every host id must be one of crib's
// ids, and none may be id 0, crib's own user, who owns crib's state and
// every other pod's files.
func (m *Manager) planUserns(ns *runtimeapi.NamespaceOption) (*usernsPlan, error) {
	u := ns.GetUsernsOptions()
	if u.GetMode() != runtimeapi.NamespaceMode_POD || (len(u.GetUids()) == 0 && len(u.GetGids()) == 0) {
		return nil, nil
	}
	if len(u.GetUids()) != 1 || len(u.GetGids()) != 1 {
		return nil, fmt.Errorf("%w: a pod user namespace needs one uid and one gid mapping", errdefs.ErrInvalidArgument)
	}
	uidMap, gidMap, err := m.ownIDMaps()
	if err != nil {
		return nil, fmt.Errorf("reading crib's own id maps: %w", err)
	}
	p := &usernsPlan{}
	for _, k := range []struct {
		what string
		in   *runtimeapi.IDMapping
		own  idmap.Map
		out  *idmap.Map
	}{{"uid", u.GetUids()[0], uidMap, &p.uid}, {"gid", u.GetGids()[0], gidMap, &p.gid}} {
		host, count := int(k.in.GetHostId()), int(k.in.GetLength())
		if host == 0 {
			return nil, fmt.Errorf("%w: pod user namespace: %s mapping %d+%d includes id 0, crib's own user", errdefs.ErrInvalidArgument, k.what, host, count)
		}
		carved, ok := k.own.Carve(int(k.in.GetContainerId()), host, count)
		if !ok {
			return nil, fmt.Errorf("%w: pod user namespace: %s mapping %d+%d exceeds crib's %d ids (add subordinate ids: scripts/host-setup.sh; crib doctor shows the room)",
				errdefs.ErrInvalidArgument, k.what, host, count, k.own.Size())
		}
		*k.out = carved
	}
	return p, nil
}

// ownIDMaps are crib's uid_map and gid_map: the ids a child namespace of
// crib's may use.
func (m *Manager) ownIDMaps() (uid, gid idmap.Map, err error) {
	if m.idMaps != nil {
		return m.idMaps()
	}
	read := func(name string) (idmap.Map, error) {
		f, err := os.Open("/proc/self/" + name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return idmap.ParseProcMap(f)
	}
	if uid, err = read("uid_map"); err != nil {
		return nil, nil, err
	}
	gid, err = read("gid_map")
	return uid, gid, err
}

// usernsHolder is the process whose clone made the pod's namespaces:
// catatonit, the pod's PID 1 when the pod shares a PID namespace, else a
// placeholder killed once the namespaces are pinned.
type usernsHolder struct {
	pid   int
	start uint64
}

// pinUserNamespaces clones catatonit into a new user namespace with the
// plan's mapping and the pod's other new namespaces, pins them all under
// dir and configures them (hostname, loopback, sysctls) from crib's side.
func (m *Manager) pinUserNamespaces(dir string, s nsSetup, u *usernsPlan, sharedPID bool, mark string) (pins map[string]string, h usernsHolder, retErr error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, h, err
	}
	path := m.opts.CatatonitPath
	if path == "" {
		path = "catatonit"
	}
	path, err := exec.LookPath(path)
	if err != nil {
		return nil, h, fmt.Errorf("the pod's user-namespace holder catatonit: %w", err)
	}
	flags := unix.CLONE_NEWUSER
	for _, k := range s.kinds {
		flags |= k.flag
	}
	if sharedPID {
		flags |= unix.CLONE_NEWPID
	}
	cmd := exec.Command(path, "-P")
	cmd.Env = []string{reaperEnv + "=" + mark}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  uintptr(flags),
		Setsid:      true,
		UidMappings: sysProcIDMap(u.uid),
		GidMappings: sysProcIDMap(u.gid),
		// The pod's root may set its supplementary groups, as in any
		// container: crib writes the gid_map itself, so no "deny".
		GidMappingsEnableSetgroups: true,
	}
	if err := cmd.Start(); err != nil {
		return nil, h, fmt.Errorf("starting the pod's user namespace (%s): %w", path, err)
	}
	go reapPodProcess(cmd)
	h.pid = cmd.Process.Pid
	defer func() {
		if retErr != nil || !sharedPID {
			if err := killProcess(h.pid, 0); err != nil {
				m.log.Warn("ending the pod's user-namespace holder", "pid", h.pid, "err", err)
			}
		}
		if retErr != nil {
			unpin(pins)
			pins = nil
		}
	}()
	if h.start, err = procfs.StartTime(h.pid); err != nil {
		return nil, h, fmt.Errorf("reading the user-namespace holder's start time: %w", err)
	}
	pins = map[string]string{}
	for _, k := range append([]nsKind{nsUser}, s.kinds...) {
		pin := filepath.Join(dir, k.name)
		if err := bindNamespace(fmt.Sprintf("/proc/%d/ns/%s", h.pid, k.name), pin); err != nil {
			return pins, h, err
		}
		pins[k.name] = pin
	}
	if err := configureIn(pins, s); err != nil {
		return pins, h, err
	}
	return pins, h, nil
}

// configureIn runs s.configure on a thread that joined the pod's network,
// IPC and UTS namespaces but stays in crib's user namespace: crib's root
// holds every capability in the pod's namespace, a child of crib's. The
// thread stays locked and dies with its goroutine, never back in the pool.
func configureIn(pins map[string]string, s nsSetup) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		for _, k := range s.kinds {
			f, err := os.Open(pins[k.name])
			if err != nil {
				done <- err
				return
			}
			err = unix.Setns(int(f.Fd()), k.flag)
			f.Close()
			if err != nil {
				done <- fmt.Errorf("joining the pod's %s namespace: %w", k.name, err)
				return
			}
		}
		done <- s.configure()
	}()
	return <-done
}

// procNS is /proc/PID/ns/NAME.
func procNS(pid int, name string) string { return "/proc/" + strconv.Itoa(pid) + "/ns/" + name }

func sysProcIDMap(m idmap.Map) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, l := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: l.ContainerID, HostID: l.HostID, Size: l.Count}
	}
	return out
}
