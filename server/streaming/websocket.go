package streaming

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/net/websocket"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// WebSocket sessions. Exec and attach speak remotecommand over WebSocket
// channels: each message starts with its channel (0 stdin, 1 stdout,
// 2 stderr, 3 the session's result, 4 terminal sizes). Version 5, which
// client-go's WebSocket executor (crictl --transport websocket) asks for
// and nothing else, adds one message: 255 then a channel number, the
// client closing that channel — how a client's stdin EOF reaches the
// command. wsstream acts on it when the negotiated subprotocol is v5's.
// Port-forward over WebSocket is SPDY carried in binary messages; the
// library's SPDY port-forward handler runs on the tunnel.

// The remotecommand subprotocols served over WebSocket. The client's
// order of preference picks one; a client that names none gets the
// unversioned binary one.
const (
	remoteCommandV4Base64 = "v4." + wsstream.Base64ChannelWebSocketProtocol
	// tunnelingProtocolPrefix marks a WebSocket subprotocol that carries
	// SPDY with the named protocol inside.
	tunnelingProtocolPrefix = portforward.WebsocketsSPDYTunnelingPrefix
)

func remoteCommandWSServed() []string {
	return []string{remotecommand.StreamProtocolV5Name, remotecommand.StreamProtocolV4Name, remoteCommandV4Base64,
		wsstream.ChannelWebSocketProtocol, wsstream.Base64ChannelWebSocketProtocol}
}

// wsFraming is how a remotecommand subprotocol carries data and results.
type wsFraming struct {
	// binary messages start with the channel's byte; otherwise they are
	// text: the channel's digit, then the data in base64.
	binary bool
	// statusObject: from v4 on, the result is a Kubernetes Status object
	// on channel 3, also on success; before, only a failure's text.
	statusObject bool
}

func remoteCommandFraming(protocol string) (wsFraming, bool) {
	switch protocol {
	case remotecommand.StreamProtocolV5Name, remotecommand.StreamProtocolV4Name:
		return wsFraming{binary: true, statusObject: true}, true
	case remoteCommandV4Base64:
		return wsFraming{statusObject: true}, true
	case "", wsstream.ChannelWebSocketProtocol:
		return wsFraming{binary: true}, true
	case wsstream.Base64ChannelWebSocketProtocol:
		return wsFraming{}, true
	}
	return wsFraming{}, false
}

// offeredProtocols lists the subprotocols a WebSocket request names, in
// the client's order; "" when it names none.
func offeredProtocols(r *http.Request) []string {
	var offered []string
	for _, v := range r.Header.Values(wsstream.WebSocketProtocolHeader) {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				offered = append(offered, p)
			}
		}
	}
	if len(offered) == 0 {
		return []string{""}
	}
	return offered
}

// sessionFunc runs one exec or attach on the session's streams; a nil
// stream is one the client did not ask for.
type sessionFunc func(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, resize <-chan remotecommand.TerminalSize) error

// serveRemoteCommandWS runs one exec or attach over WebSocket and
// reports its result on channel 3 before closing.
func (s *streamServer) serveRemoteCommandWS(w http.ResponseWriter, r *http.Request, kind string, opts remotecommand.Options, run sessionFunc) {
	offered := offeredProtocols(r)
	if !slices.ContainsFunc(offered, func(p string) bool { _, ok := remoteCommandFraming(p); return ok }) {
		// The upgrade would answer a bare 403; say why.
		msg := fmt.Sprintf("%s over WebSocket: no subprotocol of %q is served; crib serves %q", kind, offered, remoteCommandWSServed())
		s.log.Debug("streaming session refused", "err", msg)
		http.Error(w, msg, http.StatusForbidden)
		return
	}
	channels := remoteCommandChannels(opts)
	protocols := map[string]wsstream.ChannelProtocolConfig{}
	for _, p := range append([]string{""}, remoteCommandWSServed()...) {
		f, _ := remoteCommandFraming(p)
		protocols[p] = wsstream.ChannelProtocolConfig{Binary: f.binary, Channels: channels}
	}
	conn := wsstream.NewConn(protocols)
	conn.SetIdleTimeout(s.idle)
	protocol, streams, err := conn.Open(eofOnCloseHijacker{w}, r)
	if err != nil {
		s.log.Debug("streaming session: WebSocket upgrade failed", "kind", kind, "err", err)
		return
	}
	defer conn.Close()
	framing, _ := remoteCommandFraming(protocol)
	s.log.Debug("streaming session", "kind", kind, "transport", "websocket", "protocol", protocol)

	// A first, empty message tells the client its streams are up.
	switch {
	case opts.Stdout:
		streams[remotecommand.StreamStdOut].Write(nil)
	case opts.Stderr:
		streams[remotecommand.StreamStdErr].Write(nil)
	default:
		streams[remotecommand.StreamErr].Write(nil)
	}
	var in io.Reader
	var out, errOut io.WriteCloser
	if opts.Stdin {
		in = streams[remotecommand.StreamStdIn]
	}
	if opts.Stdout {
		out = streams[remotecommand.StreamStdOut]
	}
	if opts.Stderr {
		errOut = streams[remotecommand.StreamStdErr]
	}
	var resize <-chan remotecommand.TerminalSize
	if opts.TTY {
		resize = decodeResizes(r.Context(), streams[remotecommand.StreamResize])
	}
	runErr := run(r.Context(), in, out, errOut, resize)
	switch {
	case runErr == nil || exitCode(runErr) >= 0:
	case r.Context().Err() != nil:
		s.log.Debug("streaming session ended with its client", "kind", kind, "err", runErr)
	default:
		s.log.Warn("streaming session failed", "kind", kind, "err", runErr)
	}
	if err := writeSessionResult(streams[remotecommand.StreamErr], framing, kind, runErr); err != nil {
		s.log.Debug("streaming session: result not delivered", "kind", kind, "err", err)
	}
}

// remoteCommandChannels opens the channels the session asked for; the
// result channel is always open, and terminal sizes only come with a
// terminal. A channel not opened swallows what the client sends on it.
func remoteCommandChannels(opts remotecommand.Options) []wsstream.ChannelType {
	open := func(want bool, t wsstream.ChannelType) wsstream.ChannelType {
		if want {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := make([]wsstream.ChannelType, remotecommand.StreamResize+1)
	channels[remotecommand.StreamStdIn] = open(opts.Stdin, wsstream.ReadChannel)
	channels[remotecommand.StreamStdOut] = open(opts.Stdout, wsstream.WriteChannel)
	channels[remotecommand.StreamStdErr] = open(opts.Stderr, wsstream.WriteChannel)
	channels[remotecommand.StreamErr] = wsstream.WriteChannel
	channels[remotecommand.StreamResize] = open(opts.TTY, wsstream.ReadChannel)
	return channels
}

// decodeResizes turns the JSON sizes the client sends on channel 4 into
// the runtime's channel, closed when the client's channel ends.
func decodeResizes(ctx context.Context, r io.Reader) <-chan remotecommand.TerminalSize {
	sizes := make(chan remotecommand.TerminalSize)
	go func() {
		defer close(sizes)
		dec := json.NewDecoder(r)
		for {
			var size remotecommand.TerminalSize
			if err := dec.Decode(&size); err != nil {
				return
			}
			select {
			case sizes <- size:
			case <-ctx.Done():
				return
			}
		}
	}()
	return sizes
}

// sessionStatus is the Kubernetes Status object remotecommand v4 and
// later report a session's result with; clients read an exit code from
// the cause of reason "ExitCode".
type sessionStatus struct {
	Status  string                `json:"status"`
	Message string                `json:"message,omitempty"`
	Reason  string                `json:"reason,omitempty"`
	Details *sessionStatusDetails `json:"details,omitempty"`
	Code    int32                 `json:"code,omitempty"`
}

type sessionStatusDetails struct {
	Causes []sessionStatusCause `json:"causes"`
}

type sessionStatusCause struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// sessionResult is the Status for the error a session ended with.
func sessionResult(kind string, err error) sessionStatus {
	if err == nil {
		return sessionStatus{Status: "Success"}
	}
	if code := exitCode(err); code >= 0 {
		return sessionStatus{
			Status:  "Failure",
			Reason:  remotecommand.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: %d", code),
			Details: &sessionStatusDetails{Causes: []sessionStatusCause{{Reason: remotecommand.ExitCodeCauseType, Message: fmt.Sprint(code)}}},
		}
	}
	return sessionStatus{
		Status:  "Failure",
		Reason:  "InternalError",
		Message: fmt.Sprintf("%s: %v", kind, err),
		Code:    http.StatusInternalServerError,
	}
}

// exitCode is the code of a command that exited non-zero, or -1.
func exitCode(err error) int {
	var exited interface{ ExitStatus() int }
	if errors.As(err, &exited) {
		return exited.ExitStatus()
	}
	return -1
}

// writeSessionResult reports the session's end: a Status object, or
// before v4 a failure's message alone.
func writeSessionResult(w io.Writer, f wsFraming, kind string, err error) error {
	st := sessionResult(kind, err)
	if !f.statusObject {
		if err == nil {
			return nil
		}
		_, werr := io.WriteString(w, st.Message)
		return werr
	}
	b, merr := json.Marshal(st)
	if merr != nil {
		return merr
	}
	_, werr := w.Write(b)
	return werr
}

// serveTunneledPortForward serves port-forward as SPDY carried in binary
// WebSocket messages (subprotocol "SPDY/3.1+portforward.k8s.io"): once
// the WebSocket is up, the library's SPDY port-forward handler runs on
// it, given an upgrade request whose hijacked connection is the tunnel.
func (s *streamServer) serveTunneledPortForward(w http.ResponseWriter, r *http.Request, req *runtimeapi.PortForwardRequest) {
	inner, ok := pickTunneledProtocol(offeredProtocols(r))
	if !ok {
		msg := fmt.Sprintf("port-forward over WebSocket: no subprotocol of %q is served; crib serves %q", offeredProtocols(r), tunnelingProtocolPrefix+portforward.ProtocolV1Name)
		http.Error(w, msg, http.StatusForbidden)
		return
	}
	websocket.Server{
		Handshake: func(cfg *websocket.Config, _ *http.Request) error {
			cfg.Protocol = []string{tunnelingProtocolPrefix + inner}
			return nil
		},
		Handler: func(ws *websocket.Conn) {
			ws.PayloadType = websocket.BinaryFrame
			s.log.Debug("streaming session", "kind", "port-forward", "transport", "websocket", "protocol", tunnelingProtocolPrefix+inner)
			tw := &tunnelResponse{conn: ws, header: http.Header{}}
			s.servePortForwardLib(tw, tunneledUpgradeRequest(r, inner), req)
			if tw.code != http.StatusSwitchingProtocols {
				s.log.Warn("port-forward over WebSocket refused inside the tunnel", "status", tw.code, "reason", tw.body.String())
			}
		},
	}.ServeHTTP(w, r)
}

// pickTunneledProtocol picks, in the client's order, the first tunnelled
// SPDY subprotocol whose port-forward protocol the library serves, and
// returns that inner protocol.
func pickTunneledProtocol(offered []string) (string, bool) {
	for _, p := range offered {
		inner, ok := strings.CutPrefix(p, tunnelingProtocolPrefix)
		if ok && slices.Contains(portforward.SupportedProtocols, inner) {
			return inner, true
		}
	}
	return "", false
}

// tunneledUpgradeRequest is the SPDY upgrade the tunnel stands for.
func tunneledUpgradeRequest(r *http.Request, protocol string) *http.Request {
	inner := r.Clone(r.Context())
	inner.Method = http.MethodPost
	inner.Header = http.Header{}
	inner.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	inner.Header.Set(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
	inner.Header.Set(httpstream.HeaderProtocolVersion, protocol)
	return inner
}

// tunnelResponse is the response to the tunnelled upgrade: its hijacked
// connection is the WebSocket. The client wrote no HTTP inside the
// tunnel and reads none, so the status and any error text stay here.
type tunnelResponse struct {
	conn   net.Conn
	header http.Header
	code   int
	body   bytes.Buffer
}

func (t *tunnelResponse) Header() http.Header { return t.header }

func (t *tunnelResponse) WriteHeader(code int) {
	if t.code == 0 {
		t.code = code
	}
}

func (t *tunnelResponse) Write(p []byte) (int, error) {
	t.WriteHeader(http.StatusOK)
	return t.body.Write(p)
}

func (t *tunnelResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}

// eofOnCloseHijacker hands wsstream a connection whose reads end in
// io.EOF once crib itself has closed it. A session ends with the server
// closing the connection (the client reads the result channel until
// then), and wsstream would otherwise log the read it had pending as an
// error after every session.
type eofOnCloseHijacker struct{ http.ResponseWriter }

func (h eofOnCloseHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	c := &eofOnCloseConn{Conn: conn}
	// What the client sent right after its upgrade request may be
	// buffered already; it is read first.
	pending, _ := brw.Reader.Peek(brw.Reader.Buffered())
	r := bufio.NewReader(io.MultiReader(bytes.NewReader(bytes.Clone(pending)), c))
	return c, bufio.NewReadWriter(r, brw.Writer), nil
}

type eofOnCloseConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *eofOnCloseConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.closed.Load() && errors.Is(err, net.ErrClosed) {
		err = io.EOF
	}
	return n, err
}

func (c *eofOnCloseConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}
