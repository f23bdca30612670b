package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/atomicfile"
	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/runtime/cgroups"
	"github.com/crib-dev/crib/server/doctor"
	"github.com/crib-dev/crib/server/rootless"
)

// On a pure cgroup v2 host the cgroup crib is started in (its unit's, a
// `systemd-run --user --scope`'s) holds crib's own processes, and the "no
// internal processes" rule then forbids enabling any controller for a
// child of it: pods would run unconfined. Before the daemon starts, the
// parent therefore places crib's processes in a leaf and gives pods a
// sibling subtree with the delegated controllers enabled, and hands that
// subtree to the daemon as its cgroup parent.
//
// Under crib.service the unit's own cgroup must stay free of enabled
// controllers (before systemd 254 and its DelegateSubgroup=, systemd
// starts the next main process in the unit's cgroup on a restart, which
// the kernel refuses once controllers are enabled there). There the pods,
// the holder and the outbound helper go to a transient scope the user
// manager makes for crib (crib-pods-HASH.scope, Delegate=yes), and the
// daemon only moves into the service's crib/ leaf.

const (
	cgroupMount             = "/sys/fs/cgroup"
	cgroupPlacementFileName = "cgroup-placement.json"
)

// cgroupPlacement is what the parent did with cgroups before starting the
// daemon; it is written to the runroot for the daemon's cgroups.json.
type cgroupPlacement struct {
	// Mode is "split" (crib's own cgroup split into crib/ and pods/),
	// "scope" (pods in a transient systemd scope), or "" (nothing done).
	Mode   string `json:"mode,omitempty"`
	Scope  string `json:"scope,omitempty"`
	Daemon string `json:"daemon,omitempty"` // cgroup path of the daemon
	Pods   string `json:"pods,omitempty"`   // cgroup path pods go under
	Reason string `json:"reason"`
}

// placeCgroups splits crib's delegated v2 cgroup when it may, and returns
// the cgroup settings the daemon is to use (cfg's own, or pods' subtree).
func placeCgroups(cfg config.Config, holder rootless.Holder, log *slog.Logger) config.Cgroup {
	pl := choosePlacement(cfg, holder, log)
	if pl.Mode == "" {
		log.Info("cgroup placement", "action", "none", "reason", pl.Reason)
	} else {
		log.Info("cgroup placement", "mode", pl.Mode, "daemon", pl.Daemon, "pods", pl.Pods, "scope", pl.Scope)
	}
	if data, err := json.Marshal(pl); err == nil {
		if err := atomicfile.WriteFile(filepath.Join(cfg.RunRoot, cgroupPlacementFileName), data, 0o600); err != nil {
			log.Warn("recording the cgroup placement", "err", err)
		}
	}
	out := cfg.Cgroup
	if pl.Pods != "" {
		out.Parent = pl.Pods
	}
	return out
}

func choosePlacement(cfg config.Config, holder rootless.Holder, log *slog.Logger) cgroupPlacement {
	switch {
	case cfg.Cgroup.Manager == "none":
		return cgroupPlacement{Reason: "cgroup manager none configured"}
	case cfg.Cgroup.Parent != "":
		return cgroupPlacement{Reason: "cgroup.parent " + cfg.Cgroup.Parent + " configured: used as it is"}
	}
	own, err := cgroups.OwnV2Path("", "/proc/self/cgroup")
	if err != nil {
		return cgroupPlacement{Reason: err.Error()}
	}
	if own == "" {
		return cgroupPlacement{Reason: "not a pure cgroup v2 host: the delegated subtree comes from cgroup.parent (scripts/cgroup-delegate.sh)"}
	}
	dir := filepath.Join(cgroupMount, own)
	if !writableCgroup(dir) {
		return cgroupPlacement{Reason: fmt.Sprintf("crib's cgroup %s is not delegated to it; start crib from its unit (crib install-service) or with systemd-run --user --scope -p Delegate=yes", own)}
	}
	if underServiceUnit(own) {
		pl, err := placeInScope(cfg.RunRoot, dir, holder)
		if err != nil {
			return cgroupPlacement{Reason: "asking the user manager for a scope for pods: " + err.Error()}
		}
		return pl
	}
	res, err := cgroups.SplitDelegated(cgroups.SplitOptions{Dir: dir})
	if err != nil {
		return cgroupPlacement{Reason: "splitting " + own + ": " + err.Error()}
	}
	return cgroupPlacement{Mode: "split", Daemon: cgroupPath(res.Leaf), Pods: cgroupPath(res.Pods),
		Reason: "crib's delegated cgroup split into crib/ and pods/ (controllers: " + strings.Join(res.Controllers, " ") + ")"}
}

// placeInScope puts the holder and the outbound helper into crib's
// transient scope (made now, or found from an earlier start), splits it,
// and moves the daemon's processes to the service's own leaf.
func placeInScope(runRoot, serviceDir string, holder rootless.Holder) (cgroupPlacement, error) {
	name := scopeName(runRoot)
	scopeDir, err := holderScope(holder.PID, name)
	if err != nil {
		return cgroupPlacement{}, err
	}
	if scopeDir == "" {
		pids := []uint32{uint32(holder.PID)}
		if holder.HelperPID > 0 {
			pids = append(pids, uint32(holder.HelperPID))
		}
		if err := startTransientScope(name, pids); err != nil {
			return cgroupPlacement{}, err
		}
		if scopeDir, err = waitHolderScope(holder.PID, name); err != nil {
			return cgroupPlacement{}, err
		}
	}
	res, err := cgroups.SplitDelegated(cgroups.SplitOptions{Dir: scopeDir})
	if err != nil {
		return cgroupPlacement{}, err
	}
	own, err := cgroups.SplitDelegated(cgroups.SplitOptions{Dir: serviceDir, MoveOnly: true})
	if err != nil {
		return cgroupPlacement{}, err
	}
	return cgroupPlacement{Mode: "scope", Scope: name, Daemon: cgroupPath(own.Leaf), Pods: cgroupPath(res.Pods),
		Reason: "pods in the delegated transient scope " + name + " (controllers: " + strings.Join(res.Controllers, " ") + ")"}, nil
}

// underServiceUnit reports crib started by systemd as a service: systemd
// sets INVOCATION_ID for the processes of a unit it starts.
func underServiceUnit(own string) bool {
	return os.Getenv("INVOCATION_ID") != "" && strings.HasSuffix(filepath.Base(own), ".service")
}

// scopeName is stable per runroot, so a restarted crib finds its scope.
func scopeName(runRoot string) string {
	sum := sha256.Sum256([]byte(runRoot))
	return "crib-pods-" + hex.EncodeToString(sum[:6]) + ".scope"
}

// holderScope is the scope's directory when the holder already lives in
// it (crib restarted), else "".
func holderScope(pid int, scope string) (string, error) {
	path, err := cgroups.OwnV2Path("", fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for p := path; p != "/" && p != "."; p = filepath.Dir(p) {
		if filepath.Base(p) == scope {
			return filepath.Join(cgroupMount, p), nil
		}
	}
	return "", nil
}

func waitHolderScope(pid int, scope string) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		dir, err := holderScope(pid, scope)
		if err != nil || dir != "" {
			return dir, err
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the holder (pid %d) did not reach %s", pid, scope)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startTransientScope asks the user's systemd for a scope holding pids,
// with its cgroup delegated to the user.
func startTransientScope(name string, pids []uint32) error {
	conn, err := userManagerBus()
	if err != nil {
		return err
	}
	defer conn.Close()
	type property struct {
		Name  string
		Value dbus.Variant
	}
	type aux struct {
		Name  string
		Props []property
	}
	props := []property{
		{"Description", dbus.MakeVariant("crib's pods and namespace holder")},
		{"PIDs", dbus.MakeVariant(pids)},
		{"Delegate", dbus.MakeVariant(true)},
	}
	var job dbus.ObjectPath
	obj := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
	err = obj.Call("org.freedesktop.systemd1.Manager.StartTransientUnit", 0, name, "fail", props, []aux{}).Store(&job)
	if err != nil {
		return fmt.Errorf("StartTransientUnit %s: %w", name, err)
	}
	return nil
}

// userManagerBus reaches the user's systemd: its private socket, else the
// session bus.
func userManagerBus() (*dbus.Conn, error) {
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		private := filepath.Join(rt, "systemd", "private")
		if conn, err := dbus.Dial("unix:path=" + private); err == nil {
			if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(fmt.Sprint(os.Getuid()))}); err == nil {
				return conn, nil
			}
			conn.Close()
		}
	}
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return nil, fmt.Errorf("no user manager reachable over D-Bus: %w", err)
	}
	return conn, nil
}

func writableCgroup(dir string) bool {
	return unix.Access(dir, unix.W_OK) == nil && unix.Access(filepath.Join(dir, "cgroup.procs"), unix.W_OK) == nil
}

// cgroupPath turns a directory in the cgroup2 mount into a cgroup path.
func cgroupPath(dir string) string {
	rel, err := filepath.Rel(cgroupMount, dir)
	if err != nil {
		return dir
	}
	return "/" + rel
}

// recordCgroupUse writes what the daemon confines pods with to the
// runroot's cgroups.json, which `crib doctor` reads, and returns it.
func recordCgroupUse(runRoot string, m cgroups.Manager, reason string, log *slog.Logger) doctor.CgroupUse {
	u := doctor.CgroupUse{Manager: m.Name(), Version: m.Version(), Confined: m.Name() != "none", Reason: reason}
	if c, ok := m.(interface{ Controllers() []string }); ok {
		u.Controllers = c.Controllers()
	}
	// The placement is kept in cgroups.json only, which goes when crib
	// stops: a stopped crib leaves nothing in the runroot.
	placement := filepath.Join(runRoot, cgroupPlacementFileName)
	if pl, err := os.ReadFile(placement); err == nil && json.Valid(pl) {
		u.Placement = pl
	}
	os.Remove(placement)
	data, err := json.Marshal(u)
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(runRoot, doctor.CgroupsFileName), data, 0o600)
	}
	if err != nil {
		log.Warn("recording the cgroups in use", "err", err)
	}
	return u
}
