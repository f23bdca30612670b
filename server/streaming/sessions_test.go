package streaming

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSessionCache(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	cases := []struct {
		name string
		// run inserts and takes on a cache of ttl 1m and limit 2
		run func(t *testing.T, c *sessionCache)
	}{{
		name: "a token serves once",
		run: func(t *testing.T, c *sessionCache) {
			token := mustInsert(t, c, "req")
			if req, ok := c.take(token); !ok || req != "req" {
				t.Fatalf("first take: %v %v", req, ok)
			}
			if _, ok := c.take(token); ok {
				t.Fatal("second take succeeded")
			}
		},
	}, {
		name: "an expired token serves no more",
		run: func(t *testing.T, c *sessionCache) {
			token := mustInsert(t, c, "req")
			now = now.Add(time.Minute + time.Second)
			if _, ok := c.take(token); ok {
				t.Fatal("expired token served")
			}
		},
	}, {
		name: "an unknown token serves nothing",
		run: func(t *testing.T, c *sessionCache) {
			if _, ok := c.take("nope"); ok {
				t.Fatal("unknown token served")
			}
		},
	}, {
		name: "the limit refuses more, and expiry makes room",
		run: func(t *testing.T, c *sessionCache) {
			a, b := mustInsert(t, c, "a"), mustInsert(t, c, "b")
			if a == b {
				t.Fatal("two sessions share a token")
			}
			if _, err := c.insert("c"); status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("third insert: %v", err)
			}
			now = now.Add(2 * time.Minute)
			mustInsert(t, c, "c")
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newSessionCache(time.Minute, 2, clock))
		})
	}
}

func mustInsert(t *testing.T, c *sessionCache, req any) string {
	t.Helper()
	token, err := c.insert(req)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func TestSessionURLs(t *testing.T) {
	s := newStreamServer(&url.URL{Scheme: "http", Host: "127.0.0.1:1"}, &fakeStreamRuntime{}, nil)
	cases := []struct {
		name     string
		get      func() (string, error)
		wantCode codes.Code
		wantPath string
	}{
		{"exec", urlOf(s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Stdout: true})), codes.OK, "/exec/"},
		{"attach", urlOf(s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "c", Stdin: true})), codes.OK, "/attach/"},
		{"port-forward", urlOf(s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p", Port: []int32{80}})), codes.OK, "/portforward/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tc.get()
			if status.Code(err) != tc.wantCode {
				t.Fatalf("got %v, want %v", err, tc.wantCode)
			}
			if tc.wantPath != "" && !strings.HasPrefix(u, "http://127.0.0.1:1"+tc.wantPath) {
				t.Errorf("url %q, want under %s", u, tc.wantPath)
			}
		})
	}
}

// urlOf makes a Get* call's result one shape.
func urlOf[R interface{ GetUrl() string }](resp R, err error) func() (string, error) {
	return func() (string, error) {
		if err != nil {
			return "", err
		}
		return resp.GetUrl(), nil
	}
}

func TestSessionURLsAreSingleUseAndOfOneKind(t *testing.T) {
	s, rt := newTestStreamServer(t)
	exec, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := dialSession(exec.Url, v5)
	if err != nil {
		t.Fatal(err)
	}
	newWSClient(ws).waitEnd(t)
	ws.Close()
	cases := []struct {
		name   string
		method string
		url    string
		want   int
	}{
		{"a used URL", http.MethodGet, exec.Url, http.StatusNotFound},
		{"an exec token on the attach path", http.MethodGet, strings.Replace(other.Url, "/exec/", "/attach/", 1), http.StatusNotFound},
		{"the exec token after it was used up on the wrong path", http.MethodGet, other.Url, http.StatusNotFound},
		{"a method no client uses", http.MethodPut, exec.Url, http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code := requestStatus(t, tc.method, tc.url)
			if code != tc.want {
				t.Errorf("got %d, want %d", code, tc.want)
			}
		})
	}
	if calls := rt.recorded(); len(calls) != 1 {
		t.Errorf("runtime calls %q, want the one exec", calls)
	}
}

func requestStatus(t *testing.T, method, rawURL string) int {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Streaming URLs and the pull proxy's secret are all a client presents:
// each must be 128 bits from a good random source. Counting set bits per
// position over many tokens catches a short, constant or biased source
// (a stuck bit is set 0 or 1000 times; a fair one 500 ± ~16).
func TestSessionTokensAre128RandomBits(t *testing.T) {
	const n = 1000
	seen := map[string]bool{}
	var ones [128]int
	for i := 0; i < n; i++ {
		token, err := newSessionToken()
		if err != nil {
			t.Fatal(err)
		}
		if seen[token] {
			t.Fatalf("token %s handed out twice", token)
		}
		seen[token] = true
		b, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(b) != 16 {
			t.Fatalf("token %q is not 16 bytes of URL-safe base64: %v", token, err)
		}
		for bit := 0; bit < 128; bit++ {
			if b[bit/8]&(1<<(bit%8)) != 0 {
				ones[bit]++
			}
		}
	}
	for bit, c := range ones {
		// 8 standard deviations: a fair source never gets here.
		if c < n/2-130 || c > n/2+130 {
			t.Errorf("bit %d set in %d of %d tokens", bit, c, n)
		}
	}
}
