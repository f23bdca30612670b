package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	front, err := startSocksFront(ctx, sock, log)
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
