package rootless

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

func TestRunningPullProxy(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()

	tests := []struct {
		name      string
		publish   string // "" publishes nothing
		wantProxy string
		wantErr   bool
	}{
		{name: "no daemon: direct"},
		{name: "running daemon", publish: "socks5://" + live.Addr().String(), wantProxy: "socks5://" + live.Addr().String()},
		{name: "a dead daemon's leftover: direct", publish: "socks5://" + deadAddr},
		{name: "corrupt file", publish: "::not a url", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runRoot := t.TempDir()
			if tc.publish != "" {
				unpublish, err := publishPullProxy(runRoot, tc.publish)
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					unpublish()
					if _, err := os.Stat(filepath.Join(runRoot, pullProxyFileName)); !os.IsNotExist(err) {
						t.Errorf("the proxy file outlived unpublish: %v", err)
					}
				}()
			}
			proxy, err := RunningPullProxy(runRoot)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if tc.wantProxy == "" {
				if proxy != nil {
					t.Fatal("got a proxy, want direct pulls")
				}
				return
			}
			if proxy == nil {
				t.Fatalf("direct pulls, want proxy %s", tc.wantProxy)
			}
			u, _ := proxy(&url.URL{Scheme: "https", Host: "registry.example"})
			if u.String() != tc.wantProxy {
				t.Fatalf("proxy %s, want %s", u, tc.wantProxy)
			}
		})
	}
}
