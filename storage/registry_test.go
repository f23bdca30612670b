package storage

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// registry is a Debian docker-registry (the distribution registry) on a
// free loopback port, storing under dir.
type registry struct {
	addr string
	dir  string
	cmd  *exec.Cmd
}

// startRegistry runs docker-registry; extraConfig is appended to its YAML
// configuration (an auth section, say).
func startRegistry(dir, extraConfig string) (*registry, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	storageDir := filepath.Join(dir, "data")
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, storageDir, addr, extraConfig)
	confPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/usr/bin/docker-registry", "serve", confPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting docker-registry: %w", err)
	}
	r := &registry{addr: addr, dir: storageDir, cmd: cmd}
	if err := waitHTTP("http://" + addr + "/v2/"); err != nil {
		r.stop()
		log, _ := os.ReadFile(logFile.Name())
		return nil, fmt.Errorf("docker-registry did not come up: %w\n%s", err, log)
	}
	return r, nil
}

func (r *registry) stop() {
	r.cmd.Process.Kill() // by PID: the one we started
	r.cmd.Wait()
}

// blobPath is where the registry keeps blob d.
func (r *registry) blobPath(hex string) string {
	return filepath.Join(r.dir, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

func waitHTTP(u string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr finds a loopback address nobody listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// countingProxy sits in front of the registry: it counts requests per
// path and can hold a blob's download until released, so tests can see
// how many transfers ran and can cancel one half-way.
type countingProxy struct {
	addr string
	srv  *http.Server

	mu     sync.Mutex
	counts map[string]int
	holds  map[string]*hold
}

type hold struct {
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func startProxy(target string) (*countingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{addr: l.Addr().String(), counts: map[string]int{}, holds: map[string]*hold{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if r.Method == http.MethodGet {
			p.counts[r.URL.Path]++
		}
		h := p.holdFor(r.URL.Path)
		p.mu.Unlock()
		if h != nil {
			h.once.Do(func() { close(h.arrived) })
			select {
			case <-h.release:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(l)
	return p, nil
}

// holdFor finds the hold whose digest ends path. Caller holds p.mu.
func (p *countingProxy) holdFor(path string) *hold {
	for d, h := range p.holds {
		if strings.HasSuffix(path, "/blobs/"+d) {
			return h
		}
	}
	return nil
}

// holdBlob makes downloads of blob d wait until release is called; arrived
// is closed when the first request for it comes in.
func (p *countingProxy) holdBlob(d string) (arrived <-chan struct{}, release func()) {
	h := &hold{arrived: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	p.holds[d] = h
	p.mu.Unlock()
	var once sync.Once
	return h.arrived, func() {
		once.Do(func() {
			p.mu.Lock()
			delete(p.holds, d)
			p.mu.Unlock()
			close(h.release)
		})
	}
}

// blobGets counts GET requests for blob d.
func (p *countingProxy) blobGets(d string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for path, c := range p.counts {
		if strings.HasSuffix(path, "/blobs/"+d) {
			n += c
		}
	}
	return n
}

func (p *countingProxy) close() {
	p.srv.Shutdown(context.Background())
}
