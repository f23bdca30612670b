package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRoleOf(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		role string
		args []string
	}{
		{[]string{"/pause"}, "pause", []string{}},
		{[]string{"nginx", "-g", "daemon off;"}, "nginx", []string{"-g", "daemon off;"}},
		{[]string{"nginx: master process nginx -g daemon off;"}, "nginx", []string{}},
		{[]string{"nginx: master process /usr/sbin/nginx"}, "nginx", []string{}},
		{[]string{"/usr/local/apache2/bin/httpd", "-DFOREGROUND"}, "httpd", []string{"-DFOREGROUND"}},
		{[]string{"/usr/local/bin/nnp"}, "nnp", []string{}},
		{[]string{"./testbin", "pause"}, "pause", []string{}},
		{[]string{"/x/crib-testbin", "/usr/sbin/nginx", "-t"}, "nginx", []string{"-t"}},
		{[]string{"testbin"}, "testbin", []string{}},
	} {
		role, args := roleOf(tc.argv)
		if role != tc.role || strings.Join(args, "|") != strings.Join(tc.args, "|") {
			t.Errorf("roleOf(%q) = %q %q, want %q %q", tc.argv, role, args, tc.role, tc.args)
		}
	}
}

func TestListenPort(t *testing.T) {
	for _, tc := range []struct {
		server webServer
		conf   string
		want   int
	}{
		{nginx, "server {\n    listen 12003;\n    root /x;\n}\n", 12003},
		{nginx, "server {\n  listen [::]:8080 default_server;\n}\n", 8080},
		{nginx, "server {\n  # listen 99;\n}\n", 80},
		{httpd, "ServerRoot /x\nListen 8081\n", 8081},
		{httpd, "Listen 0.0.0.0:8082\n", 8082},
		{httpd, "#Listen 1\n", 80},
	} {
		dir := t.TempDir()
		conf := filepath.Join(dir, "a.conf")
		if err := os.WriteFile(conf, []byte(tc.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		w := tc.server
		w.confGlob = filepath.Join(dir, "*.conf")
		got, err := w.port()
		if err != nil || got != tc.want {
			t.Errorf("%s port from %q = %d, %v; want %d", w.name, tc.conf, got, err, tc.want)
		}
	}
}

// TestServeStopsOnStopSignal runs the web server in this process on a free
// port and stops it with each image's STOPSIGNAL.
func TestServeStopsOnStopSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGQUIT, syscall.SIGWINCH, syscall.SIGTERM} {
		dir := t.TempDir()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		os.WriteFile(filepath.Join(dir, "s.conf"), []byte("server {\n listen "+strconv.Itoa(port)+";\n}\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello from the stand-in\n"), 0o644)
		w := webServer{name: "nginx", confGlob: filepath.Join(dir, "*.conf"), listenRe: nginx.listenRe, docRoot: dir, pidFile: filepath.Join(dir, "x.pid")}

		done := make(chan error, 1)
		go func() { done <- w.serve() }()
		body := getEventually(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/")
		if body != "hello from the stand-in\n" {
			t.Errorf("GET / = %q", body)
		}
		pid, _ := os.ReadFile(w.pidFile)
		if strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
			t.Errorf("pid file holds %q, want %d", pid, os.Getpid())
		}
		syscall.Kill(os.Getpid(), sig)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%v: serve returned %v", sig, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: server did not stop", sig)
		}
		if _, err := os.Stat(w.pidFile); !os.IsNotExist(err) {
			t.Errorf("%v: pid file left behind", sig)
		}
	}
}

// getEventually GETs url until the server answers 200; the server has then
// registered its signal handlers (it does so before serving).
func getEventually(t *testing.T, url string) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200", url)
	return ""
}

// buildSelf compiles this program as images.sh does.
func buildSelf(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "testbin")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	return out
}

func TestPauseAndNNPBinary(t *testing.T) {
	bin := buildSelf(t)

	out, err := exec.Command(bin, "nnp").Output()
	if err != nil || !regexp.MustCompile(`^Effective uid: \d+\n$`).Match(out) {
		t.Errorf("nnp printed %q, %v", out, err)
	}

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(bin, "pause")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // let it install its handlers
		cmd.Process.Signal(sig)
		if err := cmd.Wait(); err != nil {
			t.Errorf("pause after %v: %v, want exit 0", sig, err)
		}
	}

	if err := exec.Command(bin, "no-such-role").Run(); err == nil {
		t.Error("an unknown role succeeded")
	}
}
