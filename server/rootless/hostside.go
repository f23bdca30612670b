package rootless

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/crib-dev/crib/internal/atomicfile"
)

const (
	// pullProxyFileName holds the URL of the running daemon's pull proxy
	// (see hostdial.go), for pulls made inside crib's namespaces.
	pullProxyFileName = "pull-proxy.url"
	// lastPullProxyFileName keeps the proxy's URL after crib stops.
	lastPullProxyFileName = "pull-proxy.last"
)

// HostSide is the daemon's end of what the parent does in the host
// namespaces: the target dialer the portal forwards into, the portal's
// control client, and the pull proxy in front of the host dialer. The
// zero HostSide is crib already in the host namespaces (rootful).
type HostSide struct {
	// Ports binds host ports through the parent's portal; nil rootful.
	Ports *PortalClient
	// PullProxy is the URL of the proxy image pulls go through; "" when
	// they go out directly.
	PullProxy string
	closers   []func()
}

// Close stops serving the parent.
func (h *HostSide) Close() {
	for _, c := range h.closers {
		c()
	}
}

// StartHostSide serves the parent's portal and starts the pull proxy in
// front of the parent's host dialer at relaySock.
func StartHostSide(ctx context.Context, runRoot, relaySock string, log *slog.Logger) (*HostSide, error) {
	h := &HostSide{}
	ctx, cancel := context.WithCancel(ctx)
	h.closers = append(h.closers, cancel)
	target, err := listenRelay(filepath.Join(runRoot, targetDialSocketName))
	if err != nil {
		cancel()
		return nil, err
	}
	go serveDialRelay(ctx, target, nil, log)
	h.Ports = &PortalClient{controlSock: filepath.Join(runRoot, controlSocketName)}
	front, err := startSocksFront(ctx, relaySock, previousPullProxy(runRoot), log)
	if err != nil {
		cancel()
		return nil, err
	}
	h.PullProxy = front.URL()
	// `crib image pull`, run inside crib's namespaces, pulls through the
	// same proxy; see RunningPullProxy.
	if unpublish, err := publishPullProxy(runRoot, h.PullProxy); err != nil {
		log.Warn("`crib image pull` will not reach registries on the host's loopback", "err", err)
	} else {
		h.closers = append(h.closers, unpublish)
	}
	return h, nil
}

// RunningPullProxy is the proxy of the daemon serving this runroot, so
// that a pull from inside crib's network namespace reaches registries on
// the host's loopback as the daemon's own pulls do. With no daemon (or a
// dead one's leftover file) pulls go out directly.
func RunningPullProxy(runRoot string) (func(*url.URL) (*url.URL, error), error) {
	data, err := os.ReadFile(filepath.Join(runRoot, pullProxyFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading crib's pull proxy: %w", err)
	}
	u, err := url.Parse(strings.TrimSpace(string(data)))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("crib's pull proxy file %s is corrupt: %q", pullProxyFileName, data)
	}
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return nil, nil
	}
	c.Close()
	return func(*url.URL) (*url.URL, error) { return u, nil }, nil
}

// publishPullProxy writes the daemon's pull proxy URL where `crib image
// pull` finds it; the returned function removes it. The address is also
// kept, in a file that outlives this crib, for the next one to reuse.
func publishPullProxy(runRoot, proxyURL string) (func(), error) {
	path := filepath.Join(runRoot, pullProxyFileName)
	for _, p := range []string{path, filepath.Join(runRoot, lastPullProxyFileName)} {
		if err := atomicfile.WriteFile(p, []byte(proxyURL+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("publishing the pull proxy: %w", err)
		}
	}
	return func() { os.Remove(path) }, nil
}

// previousPullProxy is the URL (loopback address and login) of the pull
// proxy the last crib on this runroot served, or nil.
func previousPullProxy(runRoot string) *url.URL {
	data, err := os.ReadFile(filepath.Join(runRoot, lastPullProxyFileName))
	if err != nil {
		return nil
	}
	u, err := url.Parse(strings.TrimSpace(string(data)))
	if err != nil || u.Scheme != "socks5" || u.Hostname() != "127.0.0.1" {
		return nil
	}
	return u
}
