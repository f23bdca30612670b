package server

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
	"testing"
)

// Both ends run in the test's own network namespace here; the namespace
// crossing itself is exercised by the integration test with a real crib.
func TestHostDialerProxiesHTTP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sock := filepath.Join(t.TempDir(), "hostdial.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go serveDialRelay(ctx, l, log)
	front, err := startSocksFront(ctx, sock, "", log)
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer backend.Close()

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

func TestPullProxyKeepsItsAddressAcrossRestarts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	runRoot := t.TempDir()
	if got := previousPullProxy(runRoot); got != "" {
		t.Fatalf("a fresh runroot remembers %q", got)
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

	// The remembered port taken by something else: any free port will do.
	third, err := startSocksFront(ctx, "unused.sock", addr, log)
	if err != nil {
		t.Fatal(err)
	}
	defer third.listener.Close()
	if third.listener.Addr().String() == addr {
		t.Fatal("two listeners on one address")
	}
}

func TestPreviousPullProxyIgnoresOtherURLs(t *testing.T) {
	for _, content := range []string{"http://127.0.0.1:80\n", "socks5://10.0.0.1:1080\n", "%%%", ""} {
		runRoot := t.TempDir()
		os.WriteFile(filepath.Join(runRoot, lastPullProxyFileName), []byte(content), 0o600)
		if got := previousPullProxy(runRoot); got != "" {
			t.Errorf("%q gave %q, want nothing", content, got)
		}
	}
}
