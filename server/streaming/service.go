package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/crib-dev/crib/internal/config"
)

// streamingOwner names the streaming port among the portal's forwards.
const streamingOwner = "streaming"

// streamingPortTries bounds the search for a port free in both
// namespaces.
const streamingPortTries = 20

// HostPorts binds a port of the host and forwards it into crib's network
// namespace: rootless, the parent's portal (rootless.PortalClient).
type HostPorts interface {
	ForwardTCP(ctx context.Context, owner, hostIP string, hostPort int, target string) error
	Unexpose(ctx context.Context, owner string) error
}

// Service is the running streaming server.
type Service struct {
	server *streamServer
	http   *http.Server
	conns  *connTracker
	ports  HostPorts // nil: rootful, nothing forwarded
	url    string
}

// Start serves the streaming URLs on cfg's address, on the host too when
// ports is not nil, with rt behind every session.
func Start(ctx context.Context, cfg config.Streaming, ports HostPorts, rt Runtime, log *slog.Logger) (*Service, error) {
	addr := cfg.Address
	if addr == "" {
		addr = "127.0.0.1"
	}
	l, err := listenBothNamespaces(ctx, addr, cfg.Port, ports)
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	s := &Service{ports: ports, conns: &connTracker{conns: map[*watchedConn]struct{}{}}}
	base := &url.URL{Scheme: "http", Host: net.JoinHostPort(urlHost(addr), strconv.Itoa(port))}
	var inner net.Listener = &watchedListener{Listener: l, conns: s.conns}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			s.release(l)
			return nil, fmt.Errorf("streaming TLS certificate: %w", err)
		}
		inner = tls.NewListener(inner, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		base.Scheme = "https"
	}
	s.server = newStreamServer(base, cribRuntime{rt}, log)
	s.url = base.String()
	s.http = &http.Server{
		Handler:           s.server,
		ReadHeaderTimeout: 30 * time.Second,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.http.Serve(inner); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("streaming server stopped", "err", err)
		}
	}()
	log.Info("streaming server", "url", s.url, "host_side", ports != nil)
	return s, nil
}

// release undoes listenBothNamespaces.
func (s *Service) release(l net.Listener) {
	l.Close()
	if s.ports != nil {
		s.ports.Unexpose(context.Background(), streamingOwner)
	}
}

// URLs is what the CRI service asks for exec, attach and port-forward
// URLs (cri.StreamingServer).
func (s *Service) URLs() *URLs { return &URLs{s.server} }

// Close stops serving and ends every session: hijacked connections are
// not the http.Server's any more, so they are closed here, which ends
// their execs (and kills the commands).
func (s *Service) Close() {
	s.http.Close()
	s.conns.closeAll()
	if s.ports != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.ports.Unexpose(ctx, streamingOwner)
	}
}

// listenBothNamespaces binds addr:port here and, rootless, asks the
// parent to bind the same on the host. Port 0 picks one free in both:
// the kernel picks it here, and a port the host side already uses is
// given back and another tried.
func listenBothNamespaces(ctx context.Context, addr string, port int, ports HostPorts) (net.Listener, error) {
	var lastErr error
	for range streamingPortTries {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("streaming server: listening on %s port %d: %w", addr, port, err)
		}
		if ports == nil {
			return l, nil
		}
		p := l.Addr().(*net.TCPAddr).Port
		err = ports.ForwardTCP(ctx, streamingOwner, addr, p, net.JoinHostPort(urlHost(addr), strconv.Itoa(p)))
		if err == nil {
			return l, nil
		}
		l.Close()
		lastErr = err
		if port != 0 {
			break
		}
	}
	return nil, fmt.Errorf("streaming server: binding the same port on the host: %w", lastErr)
}

// urlHost is the host clients use: an unspecified address listens on
// every address, loopback among them.
func urlHost(addr string) string {
	if ip := net.ParseIP(addr); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			return "127.0.0.1"
		}
		return "::1"
	}
	return addr
}

// A session's context must end when its client goes away, so that the
// exec'd command is killed; net/http stops watching a connection once it
// is hijacked (SPDY and WebSocket both hijack). watchedConn ends its
// context when a read fails (the client closed or reset the connection)
// or when it is closed.
type watchedConn struct {
	net.Conn
	ctx     context.Context
	cancel  context.CancelFunc
	tracker *connTracker
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.cancel()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.cancel()
	c.tracker.forget(c)
	return c.Conn.Close()
}

type watchedListener struct {
	net.Listener
	conns *connTracker
}

func (l *watchedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	wc := &watchedConn{Conn: c, ctx: ctx, cancel: cancel, tracker: l.conns}
	l.conns.add(wc)
	return wc, nil
}

// connContext gives each request the context of its connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	wc, ok := c.(*watchedConn)
	if !ok {
		return ctx
	}
	merged, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(wc.ctx, cancel)
	context.AfterFunc(merged, func() { stop() })
	return merged
}

// connTracker holds the open connections, to close at stop.
type connTracker struct {
	mu    sync.Mutex
	conns map[*watchedConn]struct{}
}

func (t *connTracker) add(c *watchedConn) {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
}

func (t *connTracker) forget(c *watchedConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *connTracker) closeAll() {
	t.mu.Lock()
	conns := make([]*watchedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
