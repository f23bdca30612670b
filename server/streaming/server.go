package streaming

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	libstreaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// streamServer hands out the single-use URLs of streaming sessions and
// serves them. It is crib's rather than k8s.io/cri-streaming's Server
// because that one keeps its tokens to itself and serves WebSocket only
// up to remotecommand v4, with no SPDY-in-WebSocket port-forward: a
// WebSocket session must be found by its token here. SPDY sessions still
// run in the library's protocol handlers, with its default timeouts.
type streamServer struct {
	rt       libstreaming.Runtime
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

func newStreamServer(base *url.URL, rt libstreaming.Runtime, log *slog.Logger) *streamServer {
	s := &streamServer{
		rt:       rt,
		base:     base,
		sessions: newSessionCache(sessionTTL, sessionsMax, time.Now),
		mux:      http.NewServeMux(),
		log:      log,
		idle:     libstreaming.DefaultConfig.StreamIdleTimeout,
		creation: libstreaming.DefaultConfig.StreamCreationTimeout,
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

// URLs hands out session URLs: GetExec, GetAttach and GetPortForward are
// what the CRI service calls, with requests it has checked and whose ids
// it has resolved; their errors are gRPC statuses already, as the cri
// package passes them on unchanged.
type URLs struct{ s *streamServer }

// GetExec returns the URL of an exec session.
func (u *URLs) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return u.s.GetExec(req)
}

// GetAttach returns the URL of an attach session.
func (u *URLs) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return u.s.GetAttach(req)
}

// GetPortForward returns the URL of a port-forward session.
func (u *URLs) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return u.s.GetPortForward(req)
}

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

// libAdapter is libstreaming.Runtime in the shapes k8s.io/cri-streaming's
// protocol handlers call; they pass a container or pod id as the name.
type libAdapter struct{ rt libstreaming.Runtime }

func (a libAdapter) ExecInContainer(ctx context.Context, _, _ string, container string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	return a.rt.Exec(ctx, container, cmd, in, out, errOut, tty, resize)
}

func (a libAdapter) AttachContainer(ctx context.Context, _, _ string, container string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return a.rt.Attach(ctx, container, in, out, errOut, tty, resize)
}

func (a libAdapter) PortForward(ctx context.Context, pod, _ string, port int32, stream io.ReadWriteCloser) error {
	return a.rt.PortForward(ctx, pod, port, stream)
}
