package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
)

// The streaming server serves the exec, attach and port-forward URLs the
// CRI returns (streamServer: SPDY through k8s.io/cri-streaming's protocol
// handlers, WebSocket through streaming_ws.go). Rootless, it
// listens on the same address and port in crib's network namespace and,
// through the parent's portal, in the host's, so the one URL works for a
// client in either (crictl on the host, a kubelet joined with `crib
// unshare`). TLS, when configured, ends here in the child: the portal
// forwards bytes.

// streamingOwner names the streaming port among the portal's forwards.
const streamingOwner = "streaming"

// streamingPortTries bounds the search for a port free in both
// namespaces.
const streamingPortTries = 20

type streamingService struct {
	server *streamServer
	http   *http.Server
	conns  *connTracker
	ports  *portalClient // nil: rootful, nothing forwarded
	url    string
}

func startStreaming(ctx context.Context, cfg config.Streaming, hs *hostSide, rt streaming.Runtime, log *slog.Logger) (*streamingService, error) {
	addr := cfg.Address
	if addr == "" {
		addr = "127.0.0.1"
	}
	l, err := listenBothNamespaces(ctx, addr, cfg.Port, hs.ports)
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	s := &streamingService{ports: hs.ports, conns: &connTracker{conns: map[*watchedConn]struct{}{}}}
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
	s.server = newStreamServer(base, rt, log)
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
	log.Info("streaming server", "url", s.url, "host_side", hs.ports != nil)
	return s, nil
}

// release undoes listenBothNamespaces.
func (s *streamingService) release(l net.Listener) {
	l.Close()
	if s.ports != nil {
		s.ports.Unexpose(context.Background(), streamingOwner)
	}
}

// close stops serving and ends every session: hijacked connections are
// not the http.Server's any more, so they are closed here, which ends
// their execs (and kills the commands).
func (s *streamingService) close() {
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
func listenBothNamespaces(ctx context.Context, addr string, port int, ports *portalClient) (net.Listener, error) {
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
		err = ports.Expose(ctx, streamingOwner, []PortForward{{
			Protocol: "tcp",
			HostIP:   addr,
			HostPort: p,
			Target:   net.JoinHostPort(urlHost(addr), strconv.Itoa(p)),
		}})
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

// streamRuntime is streaming.Runtime on crib's containers and pods.
type streamRuntime struct {
	containers *runtime.Manager
	pods       *sandbox.Manager
}

func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return r.containers.Exec(ctx, id, cmd, streams(ctx, in, out, errOut, tty, resize))
}

func (r streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return r.containers.Attach(ctx, id, streams(ctx, in, out, errOut, tty, resize))
}

// PortForward copies between the client's stream and the pod's port
// until the pod's side ends or the client goes away; the client closing
// its side is passed on as a half-close.
func (r streamRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	conn, err := r.pods.DialPort(ctx, podID, port)
	if err != nil {
		return err
	}
	defer conn.Close()
	go func() {
		io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(stream, conn)
		copied <- err
	}()
	select {
	case err := <-copied:
		return err
	case <-ctx.Done():
		conn.Close()
		<-copied
		return nil
	}
}

// streams converts the streaming library's ends to runtime's; a nil
// WriteCloser stays a nil Writer.
func streams(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) runtime.Streams {
	s := runtime.Streams{Stdin: in, TTY: tty}
	if out != nil {
		s.Stdout = out
	}
	if errOut != nil {
		s.Stderr = errOut
	}
	if resize != nil {
		s.Resize = convertResizes(ctx, resize)
	}
	return s
}

func convertResizes(ctx context.Context, in <-chan remotecommand.TerminalSize) <-chan runtime.TerminalSize {
	out := make(chan runtime.TerminalSize)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case size, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- runtime.TerminalSize{Width: size.Width, Height: size.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// streamServer hands out the single-use URLs of streaming sessions and
// serves them. It is crib's rather than k8s.io/cri-streaming's Server
// because that one keeps its tokens to itself and serves WebSocket only
// up to remotecommand v4, with no SPDY-in-WebSocket port-forward: a
// WebSocket session must be found by its token here. SPDY sessions still
// run in the library's protocol handlers, with its default timeouts.
type streamServer struct {
	rt       streaming.Runtime
	base     *url.URL
	sessions *sessionCache
	mux      *http.ServeMux
	log      *slog.Logger
	// idle ends a session that moved no data for that long; creation
	// bounds how long a SPDY client may take to open its streams.
	idle, creation time.Duration
}

// Bounds of the pending sessions: a URL is used within a minute or
// never, and a client that asks for URLs without using them cannot make
// crib hold more than sessionsMax requests.
const (
	sessionTTL  = time.Minute
	sessionsMax = 1000
)

func newStreamServer(base *url.URL, rt streaming.Runtime, log *slog.Logger) *streamServer {
	s := &streamServer{
		rt:       rt,
		base:     base,
		sessions: newSessionCache(sessionTTL, sessionsMax, time.Now),
		mux:      http.NewServeMux(),
		log:      log,
		idle:     streaming.DefaultConfig.StreamIdleTimeout,
		creation: streaming.DefaultConfig.StreamCreationTimeout,
	}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		s.mux.HandleFunc(method+" /exec/{token}", s.serveExec)
		s.mux.HandleFunc(method+" /attach/{token}", s.serveAttach)
		s.mux.HandleFunc(method+" /portforward/{token}", s.servePortForward)
	}
	return s
}

func (s *streamServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// GetExec, GetAttach and GetPortForward are what the CRI service calls,
// with requests it has checked and whose ids it has resolved; their errors
// are gRPC statuses already, as the cri package passes them on unchanged.

func (s *streamServer) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	u, err := s.sessionURL("exec", req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecResponse{Url: u}, nil
}

func (s *streamServer) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	u, err := s.sessionURL("attach", req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.AttachResponse{Url: u}, nil
}

func (s *streamServer) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	u, err := s.sessionURL("portforward", req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PortForwardResponse{Url: u}, nil
}

func (s *streamServer) sessionURL(kind string, req any) (string, error) {
	token, err := s.sessions.insert(req)
	if err != nil {
		return "", err
	}
	return s.base.JoinPath(kind, token).String(), nil
}

func (s *streamServer) serveExec(w http.ResponseWriter, r *http.Request) {
	req, ok := takeSession[*runtimeapi.ExecRequest](s.sessions, r.PathValue("token"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	opts := remotecommand.Options{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, TTY: req.Tty}
	if wsstream.IsWebSocketRequest(r) {
		s.serveRemoteCommandWS(w, r, "exec", opts, func(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, resize <-chan remotecommand.TerminalSize) error {
			return s.rt.Exec(ctx, req.ContainerId, req.Cmd, in, out, errOut, req.Tty, resize)
		})
		return
	}
	remotecommand.ServeExec(w, r, libAdapter{s.rt}, "", "", req.ContainerId, req.Cmd, &opts,
		s.idle, s.creation, remotecommand.SupportedStreamingProtocols)
}

func (s *streamServer) serveAttach(w http.ResponseWriter, r *http.Request) {
	req, ok := takeSession[*runtimeapi.AttachRequest](s.sessions, r.PathValue("token"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	opts := remotecommand.Options{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, TTY: req.Tty}
	if wsstream.IsWebSocketRequest(r) {
		s.serveRemoteCommandWS(w, r, "attach", opts, func(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, resize <-chan remotecommand.TerminalSize) error {
			return s.rt.Attach(ctx, req.ContainerId, in, out, errOut, req.Tty, resize)
		})
		return
	}
	remotecommand.ServeAttach(w, r, libAdapter{s.rt}, "", "", req.ContainerId, &opts,
		s.idle, s.creation, remotecommand.SupportedStreamingProtocols)
}

// servePortForward serves SPDY and the library's own WebSocket
// port-forward (one channel pair per port) through k8s.io/cri-streaming,
// and SPDY tunnelled in WebSocket (crictl's and kubectl's) itself.
func (s *streamServer) servePortForward(w http.ResponseWriter, r *http.Request) {
	req, ok := takeSession[*runtimeapi.PortForwardRequest](s.sessions, r.PathValue("token"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	if wsstream.IsWebSocketRequestWithTunnelingProtocol(r) {
		s.serveTunneledPortForward(w, r, req)
		return
	}
	s.servePortForwardLib(w, r, req)
}

func (s *streamServer) servePortForwardLib(w http.ResponseWriter, r *http.Request, req *runtimeapi.PortForwardRequest) {
	portforward.ServePortForward(w, r, libAdapter{s.rt}, req.PodSandboxId, "", &portforward.V4Options{Ports: req.Port},
		s.idle, s.creation, portforward.SupportedProtocols)
}

// libAdapter is streaming.Runtime in the shapes k8s.io/cri-streaming's
// protocol handlers call; they pass a container or pod id as the name.
type libAdapter struct{ rt streaming.Runtime }

func (a libAdapter) ExecInContainer(ctx context.Context, _, _ string, container string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	return a.rt.Exec(ctx, container, cmd, in, out, errOut, tty, resize)
}

func (a libAdapter) AttachContainer(ctx context.Context, _, _ string, container string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return a.rt.Attach(ctx, container, in, out, errOut, tty, resize)
}

func (a libAdapter) PortForward(ctx context.Context, pod, _ string, port int32, stream io.ReadWriteCloser) error {
	return a.rt.PortForward(ctx, pod, port, stream)
}
