package rootless

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Both ends run in the test's own network namespace here; the namespace
// crossing itself is exercised by the integration test with a real crib.
func TestHostDialerProxiesHTTP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock, front, backend := startProxyPair(ctx, t)

	proxy, _ := url.Parse(front.URL())
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	resp, err := client.Get(backend.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello /v2/" {
		t.Fatalf("body %q", body)
	}

	// A closed port must fail, not hang or succeed.
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := closed.Addr().String()
	closed.Close()
	if _, err := client.Get("http://" + addr + "/"); err == nil {
		t.Fatal("GET through the proxy to a closed port succeeded")
	}
	if _, err := dialViaHost(ctx, sock, addr); err == nil {
		t.Fatal("relay dial to a closed port succeeded")
	}
}

// A hostNetwork pod shares crib's network namespace and so reaches the
// proxy's port: only a client that knows the secret may go through.
func TestPullProxyRefusesClientsWithoutItsSecret(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, front, backend := startProxyPair(ctx, t)

	good, _ := url.Parse(front.URL())
	pass, _ := good.User.Password()
	addr := front.listener.Addr().String()
	tests := []struct {
		name  string
		proxy string
		ok    bool
	}{
		{"no login", "socks5://" + addr, false},
		{"wrong password", "socks5://crib:" + strings.Repeat("A", len(pass)) + "@" + addr, false},
		{"wrong user", "socks5://root:" + pass + "@" + addr, false},
		{"password cut short", "socks5://crib:" + pass[:len(pass)-1] + "@" + addr, false},
		{"the published URL", front.URL(), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proxy, err := url.Parse(tc.proxy)
			if err != nil {
				t.Fatal(err)
			}
			client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
			resp, err := client.Get(backend.URL)
			if !tc.ok {
				if err == nil {
					resp.Body.Close()
					t.Fatal("the proxy let the client through")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		})
	}
}

func TestPullProxyKeepsItsAddressAcrossRestarts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	runRoot := t.TempDir()
	if got := previousPullProxy(runRoot); got != nil {
		t.Fatalf("a fresh runroot remembers %v", got)
	}
	first, err := startSocksFront(ctx, "unused.sock", previousPullProxy(runRoot), log)
	if err != nil {
		t.Fatal(err)
	}
	unpublish, err := publishPullProxy(runRoot, first.URL())
	if err != nil {
		t.Fatal(err)
	}
	addr := first.listener.Addr().String()
	first.listener.Close() // crib stops
	unpublish()
	if _, err := os.Stat(filepath.Join(runRoot, pullProxyFileName)); !os.IsNotExist(err) {
		t.Fatalf("the live proxy file outlived crib: %v", err)
	}

	second, err := startSocksFront(ctx, "unused.sock", previousPullProxy(runRoot), log)
	if err != nil {
		t.Fatal(err)
	}
	defer second.listener.Close()
	if got := second.listener.Addr().String(); got != addr {
		t.Fatalf("restarted proxy on %s, want the earlier %s", got, addr)
	}
	if second.URL() != first.URL() {
		t.Fatalf("restarted proxy's URL %s, want the earlier one (same login)", second.URL())
	}

	// The remembered port taken by something else: any free port will do.
	third, err := startSocksFront(ctx, "unused.sock", previousPullProxy(runRoot), log)
	if err != nil {
		t.Fatal(err)
	}
	defer third.listener.Close()
	if third.listener.Addr().String() == addr {
		t.Fatal("two listeners on one address")
	}

	// An older crib's URL had no login: its port is kept, a secret made.
	os.WriteFile(filepath.Join(runRoot, lastPullProxyFileName), []byte("socks5://"+addr+"\n"), 0o600)
	second.listener.Close()
	fourth, err := startSocksFront(ctx, "unused.sock", previousPullProxy(runRoot), log)
	if err != nil {
		t.Fatal(err)
	}
	defer fourth.listener.Close()
	u, _ := url.Parse(fourth.URL())
	if u.Host != addr || proxySecret(u) == "" {
		t.Fatalf("after an older crib: %s, want %s with a secret", fourth.URL(), addr)
	}
}

func TestPreviousPullProxyIgnoresOtherURLs(t *testing.T) {
	for _, content := range []string{"http://127.0.0.1:80\n", "socks5://10.0.0.1:1080\n", "%%%", ""} {
		runRoot := t.TempDir()
		os.WriteFile(filepath.Join(runRoot, lastPullProxyFileName), []byte(content), 0o600)
		if got := previousPullProxy(runRoot); got != nil {
			t.Errorf("%q gave %v, want nothing", content, got)
		}
	}
}

// startProxyPair starts the host side (the dial relay on a unix socket)
// and the pull proxy in front of it, plus an HTTP backend that answers
// "hello PATH"; all end with ctx or the test.
func startProxyPair(ctx context.Context, t *testing.T) (string, *socksFront, *httptest.Server) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sock := filepath.Join(t.TempDir(), "hostdial.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go serveDialRelay(ctx, l, nil, log)
	front, err := startSocksFront(ctx, sock, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	t.Cleanup(backend.Close)
	return sock, front, backend
}
