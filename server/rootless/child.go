package rootless

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/loopback"
	"github.com/crib-dev/crib/internal/mountinfo"
)

// Child is what the bootstrap hands the daemon it starts in crib's
// namespaces.
type Child struct {
	// Config is the parent's effective configuration.
	Config config.Config
	// Activated is the CRI socket systemd passed the parent; nil without
	// socket activation.
	Activated *os.File
	// HostPortStart is the host's net.ipv4.ip_unprivileged_port_start,
	// read by the parent in the host's namespaces.
	HostPortStart int
	// RelaySock is the parent's host dialer (hostdial.go).
	RelaySock string
	// IdleMarker is written at stop when no pod or container is left, so
	// that the parent may stop the namespace holder.
	IdleMarker string
	ready      *os.File
}

// IsChild reports whether this process is the daemon the parent
// re-executed into crib's namespaces.
func IsChild() bool {
	h, _ := peekHandoff()
	return h.Child
}

// StartChild takes the parent's handoff and prepares crib's namespaces
// for the daemon, as root there (idempotent: a restarted crib rejoins
// them).
func StartChild(log *slog.Logger) (*Child, error) {
	h, err := takeHandoff()
	if err != nil {
		return nil, err
	}
	if h.Config == nil {
		return nil, errors.New("crib's parent passed no configuration")
	}
	if err := dieWithParent(h.ParentPID); err != nil {
		return nil, err
	}
	if err := prepareNamespaces(h, log); err != nil {
		return nil, err
	}
	c := &Child{
		Config:        *h.Config,
		HostPortStart: UnprivilegedPortStart(),
		RelaySock:     filepath.Join(h.Config.RunRoot, relaySocketName),
		IdleMarker:    filepath.Join(h.Config.RunRoot, idleMarkerName),
		ready:         os.NewFile(fdReady, "crib-ready"),
	}
	if h.HostPortStart != nil {
		c.HostPortStart = *h.HostPortStart
	}
	if c.Activated, err = inheritedSocket(h.ListenFD); err != nil {
		c.ready.Close()
		return nil, err
	}
	return c, nil
}

// prepareNamespaces readies crib's mount and network namespaces.
func prepareNamespaces(h Handoff, log *slog.Logger) error {
	if err := prepareMountNamespace(); err != nil {
		return err
	}
	// Before anything runs crun or runc: see cgroupview.go.
	if did, err := prepareCgroupView(h.Config.RunRoot); err != nil {
		return fmt.Errorf("preparing the cgroup view in crib's namespace: %w", err)
	} else if did != "" {
		log.Info("cgroup view: crib's mount namespace shows a v1-only /sys/fs/cgroup", "did", did)
	}
	if h.NodeNamespaces {
		if err := mountNodeFileSystems(); err != nil {
			return err
		}
	}
	if err := copyUpOnce(*h.Config, log); err != nil {
		return err
	}
	if err := loopback.Up(); err != nil {
		return fmt.Errorf("bringing up loopback in crib's network namespace: %w", err)
	}
	if err := useNamespaceResolver(h.Config.RunRoot); err != nil {
		log.Warn("keeping the host's resolv.conf in crib's namespace", "err", err)
	}
	return nil
}

// Ready tells the parent the daemon serves.
func (c *Child) Ready() { c.ready.Write([]byte{1}) }

// Close lets go of the ready pipe.
func (c *Child) Close() { c.ready.Close() }

// inheritedSocket is the activated socket the parent passed down at fd;
// nil when there is none.
func inheritedSocket(fd int) (*os.File, error) {
	if fd == 0 {
		return nil, nil
	}
	if fd != fdActivated {
		return nil, fmt.Errorf("crib's parent passed the activated socket at descriptor %d, not %d", fd, fdActivated)
	}
	return os.NewFile(uintptr(fd), "crib-activated-socket"), nil
}

// dieWithParent re-arms the parent-death signal, which the kernel clears
// when the child gains capabilities at exec, and checks the parent (want,
// 0 when it is outside the child's PID namespace) did not die in between.
func dieWithParent(want int) error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("setting the parent-death signal: %w", err)
	}
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
	if CopiedUp("/etc") {
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

// isMounted reports whether path is a mount point in crib's namespace.
func isMounted(path string) (bool, error) {
	points, err := mountinfo.Points()
	return slices.Contains(points, path), err
}
