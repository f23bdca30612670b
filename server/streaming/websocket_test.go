package streaming

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// fakeStreamRuntime stands in for crib's runtime, which needs running
// containers (user namespaces, runc, conmon) that a unit test cannot
// start; TestIntegrationStreaming drives the real one with crictl. Exec
// behaves by its command's first word.
type fakeStreamRuntime struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeStreamRuntime) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeStreamRuntime) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeStreamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	f.record(fmt.Sprintf("exec %s %s stdin=%t stdout=%t stderr=%t tty=%t", id, strings.Join(cmd, " "), in != nil, out != nil, errOut != nil, tty))
	switch cmd[0] {
	case "echo": // both outputs, success
		fmt.Fprint(out, "out\n")
		if errOut != nil {
			fmt.Fprint(errOut, "err\n")
		}
		return nil
	case "cat": // stdin to stdout until the client closes stdin, then exit 3
		io.Copy(out, in)
		fmt.Fprint(out, "eof\n")
		return exitStatus(3)
	case "size": // the first terminal size the client sends
		select {
		case s := <-resize:
			fmt.Fprintf(out, "%dx%d\n", s.Width, s.Height)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.New("boom")
}

func (f *fakeStreamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	f.record("attach " + id)
	fmt.Fprintf(out, "attached %s\n", id)
	return nil
}

// PortForward answers each read with the port and what it read.
func (f *fakeStreamRuntime) PortForward(ctx context.Context, pod string, port int32, stream io.ReadWriteCloser) error {
	f.record(fmt.Sprintf("port-forward %s %d", pod, port))
	buf := make([]byte, 512)
	for {
		n, err := stream.Read(buf)
		if n > 0 {
			fmt.Fprintf(stream, "%d:%s", port, buf[:n])
		}
		if err != nil {
			return nil
		}
	}
}

func newTestStreamServer(t *testing.T) (*streamServer, *fakeStreamRuntime) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	base := &url.URL{Scheme: "http", Host: ts.Listener.Addr().String()}
	rt := &fakeStreamRuntime{}
	s := newStreamServer(base, rt, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ts.Config.Handler = s
	ts.Start()
	t.Cleanup(ts.Close)
	return s, rt
}

func dialSession(rawURL string, protocols ...string) (*websocket.Conn, error) {
	cfg, err := websocket.NewConfig(strings.Replace(rawURL, "http://", "ws://", 1), "http://localhost/")
	if err != nil {
		return nil, err
	}
	cfg.Protocol = protocols
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		return nil, err
	}
	ws.PayloadType = websocket.BinaryFrame
	return ws, nil
}

// wsClient reads a remotecommand session's channels as they arrive.
type wsClient struct {
	ws     *websocket.Conn
	base64 bool
	mu     sync.Mutex
	got    map[byte]*bytes.Buffer
	done   chan struct{}
}

func newWSClient(ws *websocket.Conn) *wsClient {
	c := &wsClient{ws: ws, base64: strings.Contains(negotiated(ws), "base64"), got: map[byte]*bytes.Buffer{}, done: make(chan struct{})}
	go c.readAll()
	return c
}

func (c *wsClient) readAll() {
	defer close(c.done)
	for {
		var msg []byte
		if err := websocket.Message.Receive(c.ws, &msg); err != nil {
			return
		}
		if len(msg) == 0 {
			continue
		}
		ch, data := msg[0], msg[1:]
		if c.base64 {
			ch -= '0'
			data, _ = base64.StdEncoding.DecodeString(string(data))
		}
		c.mu.Lock()
		if c.got[ch] == nil {
			c.got[ch] = &bytes.Buffer{}
		}
		c.got[ch].Write(data)
		c.mu.Unlock()
	}
}

func (c *wsClient) channel(ch byte) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got[ch] == nil {
		return ""
	}
	return c.got[ch].String()
}

func (c *wsClient) send(t *testing.T, ch byte, data string) {
	t.Helper()
	var err error
	if c.base64 {
		err = websocket.Message.Send(c.ws, string('0'+ch)+base64.StdEncoding.EncodeToString([]byte(data)))
	} else {
		err = websocket.Message.Send(c.ws, append([]byte{ch}, data...))
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (c *wsClient) waitChannel(t *testing.T, ch byte, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(c.channel(ch), want) {
		if time.Now().After(deadline) {
			t.Fatalf("channel %d lacks %q: %q", ch, want, c.channel(ch))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *wsClient) waitEnd(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not end the session")
	}
}

const (
	v5 = "v5.channel.k8s.io"
	v4 = "v4.channel.k8s.io"
)

func TestRemoteCommandOverWebSocket(t *testing.T) {
	exitStatus3 := `{"status":"Failure","message":"command terminated with non-zero exit code: 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`
	cases := []struct {
		name   string
		offer  []string
		exec   *runtimeapi.ExecRequest // else attach
		attach *runtimeapi.AttachRequest
		// the client's side of the session, after the upgrade
		talk         func(t *testing.T, c *wsClient)
		wantProtocol string
		wantCall     string
		wantStdout   string
		wantStderr   string
		wantResult   string
	}{{
		name:  "v5: stdin reaches the command and the close signal ends it",
		offer: []string{v5},
		exec:  &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true},
		talk: func(t *testing.T, c *wsClient) {
			c.send(t, 0, "hello\n")
			c.waitChannel(t, 1, "hello\n")
			c.send(t, 255, "\x00") // close channel 0
		},
		wantProtocol: v5,
		wantCall:     "exec c1 cat stdin=true stdout=true stderr=false tty=false",
		wantStdout:   "hello\neof\n",
		wantResult:   exitStatus3,
	}, {
		name:         "v5 is taken when the client prefers it to v4",
		offer:        []string{v5, v4},
		exec:         &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo"}, Stdout: true, Stderr: true},
		wantProtocol: v5,
		wantCall:     "exec c1 echo stdin=false stdout=true stderr=true tty=false",
		wantStdout:   "out\n",
		wantStderr:   "err\n",
		wantResult:   `{"status":"Success"}`,
	}, {
		name:         "v4 is taken when the client prefers it",
		offer:        []string{v4, v5},
		exec:         &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo"}, Stdout: true, Stderr: true},
		wantProtocol: v4,
		wantCall:     "exec c1 echo stdin=false stdout=true stderr=true tty=false",
		wantStdout:   "out\n",
		wantStderr:   "err\n",
		wantResult:   `{"status":"Success"}`,
	}, {
		name:  "v4 has no close signal: stdin stays open until the client hangs up",
		offer: []string{v4},
		exec:  &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true},
		talk: func(t *testing.T, c *wsClient) {
			c.send(t, 0, "one ")
			c.send(t, 255, "\x00")
			c.send(t, 0, "two")
			c.waitChannel(t, 1, "one two") // still open after the 255 message
			c.ws.Close()
		},
		wantProtocol: v4,
		wantCall:     "exec c1 cat stdin=true stdout=true stderr=false tty=false",
		wantStdout:   "one two",
	}, {
		name:         "v4 base64 frames carry the channel as a digit",
		offer:        []string{"v4.base64.channel.k8s.io"},
		exec:         &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo"}, Stdout: true, Stderr: true},
		wantProtocol: "v4.base64.channel.k8s.io",
		wantCall:     "exec c1 echo stdin=false stdout=true stderr=true tty=false",
		wantStdout:   "out\n",
		wantStderr:   "err\n",
		wantResult:   `{"status":"Success"}`,
	}, {
		name:  "v5 with a terminal: sizes reach the runtime",
		offer: []string{v5},
		exec:  &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"size"}, Stdin: true, Stdout: true, Tty: true},
		talk: func(t *testing.T, c *wsClient) {
			c.send(t, 4, `{"Width":71,"Height":21}`)
		},
		wantProtocol: v5,
		wantCall:     "exec c1 size stdin=true stdout=true stderr=false tty=true",
		wantStdout:   "71x21\n",
		wantResult:   `{"status":"Success"}`,
	}, {
		name:         "a runtime failure is an internal error",
		offer:        []string{v5},
		exec:         &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"fail"}, Stdout: true},
		wantProtocol: v5,
		wantCall:     "exec c1 fail stdin=false stdout=true stderr=false tty=false",
		wantResult:   `{"status":"Failure","message":"exec: boom","reason":"InternalError","code":500}`,
	}, {
		name:         "unversioned: a failure is its text alone",
		offer:        []string{"channel.k8s.io"},
		exec:         &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"fail"}, Stdout: true},
		wantProtocol: "channel.k8s.io",
		wantCall:     "exec c1 fail stdin=false stdout=true stderr=false tty=false",
		wantResult:   "exec: boom",
	}, {
		name:         "unversioned: success says nothing",
		offer:        nil,
		exec:         &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo"}, Stdout: true},
		wantProtocol: "",
		wantCall:     "exec c1 echo stdin=false stdout=true stderr=false tty=false",
		wantStdout:   "out\n",
	}, {
		name:         "attach over v5",
		offer:        []string{v5},
		attach:       &runtimeapi.AttachRequest{ContainerId: "c2", Stdout: true},
		wantProtocol: v5,
		wantCall:     "attach c2",
		wantStdout:   "attached c2\n",
		wantResult:   `{"status":"Success"}`,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, rt := newTestStreamServer(t)
			u := sessionURLFor(t, s, tc.exec, tc.attach)
			ws, err := dialSession(u, tc.offer...)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			if got := negotiated(ws); got != tc.wantProtocol {
				t.Errorf("negotiated %q, want %q", got, tc.wantProtocol)
			}
			c := newWSClient(ws)
			if tc.talk != nil {
				tc.talk(t, c)
			}
			c.waitEnd(t)
			if calls := rt.recorded(); len(calls) != 1 || calls[0] != tc.wantCall {
				t.Errorf("runtime calls %q, want [%q]", calls, tc.wantCall)
			}
			for ch, want := range map[byte]string{1: tc.wantStdout, 2: tc.wantStderr, 3: tc.wantResult} {
				if got := c.channel(ch); got != want {
					t.Errorf("channel %d: got %q, want %q", ch, got, want)
				}
			}
		})
	}
}

func sessionURLFor(t *testing.T, s *streamServer, exec *runtimeapi.ExecRequest, attach *runtimeapi.AttachRequest) string {
	t.Helper()
	if exec != nil {
		resp, err := s.GetExec(exec)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Url
	}
	resp, err := s.GetAttach(attach)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Url
}

func negotiated(ws *websocket.Conn) string {
	if p := ws.Config().Protocol; len(p) == 1 {
		return p[0]
	}
	return ""
}

// upgradeRequest is a WebSocket upgrade offering protocols, sent without
// a WebSocket client so that a refusal's status and text can be read.
func upgradeRequest(t *testing.T, rawURL string, protocols ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", strings.Join(protocols, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestWebSocketUnknownProtocolsAreRefused(t *testing.T) {
	cases := []struct {
		name     string
		kind     string
		offer    []string
		wantText string
	}{
		{"exec, a version crib does not know", "exec", []string{"v6.channel.k8s.io"}, v5},
		{"attach, not remotecommand at all", "attach", []string{"chat"}, v4},
		{"port-forward, a tunnelled protocol crib does not know", "portforward", []string{"SPDY/3.1+v9.portforward.k8s.io"}, "SPDY/3.1+portforward.k8s.io"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, rt := newTestStreamServer(t)
			var u string
			switch tc.kind {
			case "exec":
				u = sessionURLFor(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo"}, Stdout: true}, nil)
			case "attach":
				u = sessionURLFor(t, s, nil, &runtimeapi.AttachRequest{ContainerId: "c1", Stdout: true})
			default:
				resp, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1", Port: []int32{80}})
				if err != nil {
					t.Fatal(err)
				}
				u = resp.Url
			}
			code, body := upgradeRequest(t, u, tc.offer...)
			if code != http.StatusForbidden || !strings.Contains(body, tc.wantText) {
				t.Errorf("got %d %q, want 403 naming %q", code, body, tc.wantText)
			}
			if calls := rt.recorded(); len(calls) != 0 {
				t.Errorf("runtime was called: %q", calls)
			}
		})
	}
}

// crictl's port-forward over WebSocket: SPDY inside binary messages,
// several forwarded connections each a pair of streams.
func TestPortForwardTunneledInWebSocket(t *testing.T) {
	s, rt := newTestStreamServer(t)
	resp, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1", Port: []int32{8080}})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := dialSession(resp.Url, "SPDY/3.1+portforward.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	if got := negotiated(ws); got != "SPDY/3.1+portforward.k8s.io" {
		t.Fatalf("negotiated %q", got)
	}
	conn, err := spdy.NewClientConnection(ws)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, port := range []string{"8080", "9090"} {
		headers := http.Header{}
		headers.Set(portforward.PortHeader, port)
		headers.Set(portforward.PortForwardRequestIDHeader, fmt.Sprint(i))
		headers.Set(portforward.StreamType, portforward.StreamTypeError)
		errStream, err := conn.CreateStream(headers)
		if err != nil {
			t.Fatal(err)
		}
		headers.Set(portforward.StreamType, portforward.StreamTypeData)
		data, err := conn.CreateStream(headers)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := data.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		data.Close() // half-close: the forward ends when the pod side has answered
		got, err := io.ReadAll(data)
		if err != nil || string(got) != port+":ping" {
			t.Errorf("port %s: got %q, %v", port, got, err)
		}
		if msg, _ := io.ReadAll(errStream); len(msg) != 0 {
			t.Errorf("port %s: error stream says %q", port, msg)
		}
		conn.RemoveStreams(errStream, data)
	}
	want := []string{"port-forward p1 8080", "port-forward p1 9090"}
	if got := rt.recorded(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("runtime calls %q, want %q", got, want)
	}
}

// SPDY sessions still run in k8s.io/cri-streaming's handlers, found by
// crib's tokens.
func TestExecOverSPDY(t *testing.T) {
	s, rt := newTestStreamServer(t)
	resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, resp.Url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, remotecommand.StreamProtocolV4Name)
	tr, err := spdy.NewRoundTripper(nil)
	if err != nil {
		t.Fatal(err)
	}
	hr, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tr.NewConnection(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream := func(kind string) httpstream.Stream {
		h := http.Header{}
		h.Set(remotecommand.StreamType, kind)
		st, err := conn.CreateStream(h)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	errStream, stdin, stdout := stream(remotecommand.StreamTypeError), stream(remotecommand.StreamTypeStdin), stream(remotecommand.StreamTypeStdout)
	stdin.Write([]byte("over spdy\n"))
	stdin.Close()
	out, _ := io.ReadAll(stdout)
	result, _ := io.ReadAll(errStream)
	if string(out) != "over spdy\neof\n" || !strings.Contains(string(result), `"NonZeroExitCode"`) {
		t.Errorf("stdout %q, result %q", out, result)
	}
	if got := rt.recorded(); len(got) != 1 || got[0] != "exec c1 cat stdin=true stdout=true stderr=false tty=false" {
		t.Errorf("runtime calls %q", got)
	}
}

// A session crib ends by closing the connection is a normal end: the
// library's reader must not log it as an error (k8s.io/streaming logs
// through klog, so the test captures klog).
func TestWebSocketSessionEndsWithoutErrorLog(t *testing.T) {
	logged := &lockedLog{}
	klog.LogToStderr(false)
	klog.SetOutput(logged)
	t.Cleanup(func() {
		klog.SetOutput(os.Stderr)
		klog.LogToStderr(true)
	})
	s, _ := newTestStreamServer(t)
	u := sessionURLFor(t, s, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo"}, Stdout: true}, nil)
	ws, err := dialSession(u, v5)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	newWSClient(ws).waitEnd(t)
	time.Sleep(200 * time.Millisecond) // the server's reader ends just after
	if out := logged.String(); out != "" {
		t.Errorf("the session logged:\n%s", out)
	}
}

type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// exitStatus is a command's non-zero exit, as crib's runtime reports it.
type exitStatus int

func (e exitStatus) Error() string   { return fmt.Sprintf("command exited with code %d", int(e)) }
func (e exitStatus) ExitStatus() int { return int(e) }
func (e exitStatus) Exited() bool    { return true }
func (e exitStatus) String() string  { return e.Error() }
