package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nginxTitlePrefix starts the process title of the nginx master. critest
// greps /proc/1/cmdline for "master process" to find it.
const nginxTitlePrefix = "nginx: master process"

// webServer describes one upstream web server the stand-in imitates: where
// that server keeps its configuration, documents and pid file.
type webServer struct {
	name     string
	confGlob string         // configuration files holding the listen port
	listenRe *regexp.Regexp // first submatch: the port
	docRoot  string
	pidFile  string
}

var (
	nginx = webServer{
		name:     "nginx",
		confGlob: "/etc/nginx/conf.d/*.conf",
		listenRe: regexp.MustCompile(`(?m)^\s*listen\s+(?:\S*:)?(\d+)\b[^;]*;`),
		docRoot:  "/usr/share/nginx/html",
		pidFile:  "/var/run/nginx.pid",
	}
	httpd = webServer{
		name:     "httpd",
		confGlob: "/usr/local/apache2/conf/httpd.conf",
		listenRe: regexp.MustCompile(`(?m)^\s*Listen\s+(?:\S*:)?(\d+)\s*$`),
		docRoot:  "/usr/local/apache2/htdocs",
		pidFile:  "/usr/local/apache2/logs/httpd.pid",
	}
)

// stopSignals end the servers gracefully: SIGTERM and SIGINT always, SIGQUIT
// (the STOPSIGNAL of nginx images since 1.19) and SIGWINCH (httpd's graceful
// stop, the STOPSIGNAL of the httpd images).
var stopSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGWINCH}

// runNginx serves like nginx in the foreground. Its first run re-executes
// itself under the master's process title, so that /proc/PID/cmdline reads
// "nginx: master process nginx -g daemon off;" while the executable (hence
// comm and pidof) stays "nginx".
func runNginx(args []string) error {
	if !strings.HasPrefix(os.Args[0], nginxTitlePrefix) {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own executable: %w", err)
		}
		title := strings.Join(append([]string{nginxTitlePrefix, "nginx"}, args...), " ")
		return syscall.Exec(exe, []string{title}, os.Environ())
	}
	return nginx.serve()
}

// runHTTPD serves like httpd -DFOREGROUND. The start-up line names httpd:
// critest looks for "httpd" in the container log.
func runHTTPD(_ []string) error {
	return httpd.serve()
}

// serve listens on the configured port, writes the pid file, serves the
// document root and returns nil after a stop signal.
func (w webServer) serve() error {
	port, err := w.port()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", port, err)
	}
	if err := os.WriteFile(w.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	defer os.Remove(w.pidFile)

	srv := &http.Server{Handler: logRequests(http.FileServer(http.Dir(w.docRoot))), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "%s: crib stand-in serving %s on port %d (pid %d)\n", w.name, w.docRoot, port, os.Getpid())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, stopSignals...)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case sig := <-sigs:
		fmt.Fprintf(os.Stderr, "%s: %v received, shutting down\n", w.name, sig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// port returns the first listen port of the configuration files, or 80.
func (w webServer) port() (int, error) {
	files, err := filepath.Glob(w.confGlob)
	if err != nil {
		return 0, fmt.Errorf("configuration %s: %w", w.confGlob, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return 0, fmt.Errorf("read configuration: %w", err)
		}
		if m := w.listenRe.FindSubmatch(data); m != nil {
			return strconv.Atoi(string(m[1]))
		}
	}
	return 80, nil
}

// logRequests writes one access-log line per request to stdout, where the
// upstream images send their access log.
func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Printf("%s %s %s\n", r.RemoteAddr, r.Method, r.URL.Path)
		h.ServeHTTP(rw, r)
	})
}
