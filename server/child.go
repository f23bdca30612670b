package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/loopback"
	"github.com/crib-dev/crib/internal/mountinfo"
)

// runChild is the daemon inside crib's namespaces, as root there. It
// prepares the namespaces (idempotent: a restarted crib rejoins them) and
// serves.
func runChild(ctx context.Context, o Options) error {
	if err := dieWithParent(); err != nil {
		return err
	}
	if err := prepareMountNamespace(); err != nil {
		return err
	}
	// Before anything runs crun or runc: see cgroupview.go.
	if did, err := prepareCgroupView(o.Config.RunRoot); err != nil {
		return fmt.Errorf("preparing the cgroup view in crib's namespace: %w", err)
	} else if did != "" {
		o.Logger.Info("cgroup view: crib's mount namespace shows a v1-only /sys/fs/cgroup", "did", did)
	}
	if err := setUpNodeNamespaces(); err != nil {
		return err
	}
	if err := copyUpOnce(o); err != nil {
		return err
	}
	if err := loopback.Up(); err != nil {
		return fmt.Errorf("bringing up loopback in crib's network namespace: %w", err)
	}
	if err := useNamespaceResolver(o.Config.RunRoot); err != nil {
		o.Logger.Warn("keeping the host's resolv.conf in crib's namespace", "err", err)
	}
	ready := os.NewFile(fdReady, "crib-ready")
	defer ready.Close()
	activated, err := inheritedSocket()
	if err != nil {
		return err
	}
	return runDaemon(ctx, o, daemonEnv{
		activated:  activated,
		idleMarker: filepath.Join(o.Config.RunRoot, idleMarkerName),
		rootless:   true,
		relaySock:  filepath.Join(o.Config.RunRoot, relaySocketName),
		ready:      func() { ready.Write([]byte{1}) },
	})
}

// dieWithParent re-arms the parent-death signal, which the kernel clears
// when the child gains capabilities at exec, and checks the parent did not
// die in between.
func dieWithParent() error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("setting the parent-death signal: %w", err)
	}
	want, _ := strconv.Atoi(os.Getenv(parentPIDEnv))
	if os.Getppid() != want || pipeReaderGone(fdReady) {
		return errors.New("crib's parent exited during start-up")
	}
	return nil
}

// prepareMountNamespace makes crib's mounts invisible to the host and the
// host's later unmounts visible here.
func prepareMountNamespace() error {
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("making / a slave mount in crib's namespace: %w", err)
	}
	return nil
}

// useNamespaceResolver points /etc/resolv.conf, inside crib's mount
// namespace only, at slirp4netns's DNS forwarder when the host's resolver is
// on its loopback (systemd-resolved's 127.0.0.53, a local dnsmasq), which
// crib's network namespace cannot reach.
func useNamespaceResolver(runRoot string) error {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if mounted, _ := isMounted("/etc/resolv.conf"); mounted {
		return nil
	}
	if !resolvConfUsesLoopback(string(data)) {
		return nil
	}
	if !linkExists("tap0") {
		return nil // pasta copies the host's addresses and forwards DNS itself
	}
	conf := []byte("nameserver " + slirpDNS + "\n")
	if copiedUp("/etc") {
		// /etc is crib's own tmpfs: replace the link to the host's file.
		if err := os.Remove("/etc/resolv.conf"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return os.WriteFile("/etc/resolv.conf", conf, 0o644)
	}
	path := filepath.Join(runRoot, "resolv.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		return err
	}
	return unix.Mount(path, "/etc/resolv.conf", "", unix.MS_BIND, "")
}

// linkExists asks netlink, not /sys/class/net: the sysfs crib inherits
// still shows the host's interfaces.
func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// resolvConfUsesLoopback reports whether every nameserver is a loopback
// address (or none is set, which means 127.0.0.1 to the resolver).
func resolvConfUsesLoopback(conf string) bool {
	for _, line := range strings.Split(conf, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if ip := net.ParseIP(f[1]); ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// withEnv returns env with key set to value, replacing any earlier value
// (getenv returns the first match, so appending is not enough).
func withEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// isMounted reports whether path is a mount point in crib's namespace.
func isMounted(path string) (bool, error) {
	points, err := mountinfo.Points()
	return slices.Contains(points, path), err
}
