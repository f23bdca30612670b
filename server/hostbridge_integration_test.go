//go:build integration

package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A hostNetwork pod shares crib's network namespace. Nothing it can
// dial there may lead to the host's loopback: not the outbound helper's
// gateway (slirp4netns --disable-host-loopback, pasta --no-map-gw), not
// crib's own loopback, and not the pull proxy, which crib serves on that
// loopback and which must refuse a client that lacks its secret.
func TestIntegrationHostLoopbackUnreachable(t *testing.T) {
	resp, err := http.Get("http://127.0.0.1:5000/v2/")
	if err != nil {
		t.Fatalf("the test registry on the host's 127.0.0.1:5000 does not answer (run conformance/images.sh): %v", err)
	}
	resp.Body.Close()
	for _, outbound := range []string{"slirp4netns", "pasta"} {
		t.Run(outbound, func(t *testing.T) {
			u := lookupTestUser(t)
			d := newDaemon(t, u)
			d.extra = append(d.extra, "--network-outbound", outbound)
			d.startWithRegistry(t)
			holder, err := os.ReadFile(filepath.Join(d.runroot, "holder.json"))
			if err != nil || !strings.Contains(string(holder), `"outbound":"`+outbound+`"`) {
				t.Fatalf("crib's namespace is not served by %s: %v %s\n%s", outbound, err, holder, d.out)
			}
			hostLoopbackUnreachable(t, d)
		})
	}
}

func hostLoopbackUnreachable(t *testing.T, d *daemon) {
	c := d.clients(t)
	ctx := context.Background()
	if _, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("pull: %v\n%s", err, d.out)
	}
	pcfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "hostnet", Namespace: "default", Uid: "hostnet-uid"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}
	pod, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.out)
	}
	ctr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "probe"},
			Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
			Command:  []string{"sleep", "3600"},
		}})
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, d.out)
	}
	if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	sh := func(script string) ([]byte, int32) {
		r, err := c.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"sh", "-c", script}, Timeout: 20})
		if err != nil {
			t.Fatalf("exec %q: %v", script, err)
		}
		return append(r.Stdout, r.Stderr...), r.ExitCode
	}

	targets := []string{"127.0.0.1:5000"}
	routes, _ := sh("cat /proc/net/route")
	gw := defaultGateway(string(routes))
	if gw == "" {
		t.Fatalf("a hostNetwork pod sees no default route in crib's namespace:\n%s", routes)
	}
	targets = append(targets, net.JoinHostPort(gw, "5000"))
	for _, target := range targets {
		t.Run("registry at "+target, func(t *testing.T) {
			host, port, _ := net.SplitHostPort(target)
			out, code := sh(fmt.Sprintf(`(printf 'GET /v2/_catalog HTTP/1.0\r\n\r\n'; sleep 2) | nc -w 5 %s %s`, host, port))
			if bytes.Contains(out, []byte("HTTP/1.")) {
				t.Fatalf("the pod read the host's registry through %s: %q", target, out)
			}
			t.Logf("as expected (exit %d): %s", code, bytes.TrimSpace(out))
		})
	}

	proxy := readProxyURL(t, d)
	_, port, _ := net.SplitHostPort(proxy.Host)
	pass, _ := proxy.User.Password()
	logins := []struct{ name, greeting string }{
		{"no login", socksGreetingNoAuth()},
		{"a wrong secret", socksGreetingLogin("crib", strings.Repeat("x", len(pass)))},
	}
	for _, l := range logins {
		t.Run("pull proxy with "+l.name, func(t *testing.T) {
			// nc stops reading when its input ends: the sleep keeps it
			// open until the answer is in.
			script := fmt.Sprintf(`(printf '%s'; sleep 2) | nc -w 5 127.0.0.1 %s`, l.greeting, port)
			out, _ := sh(script)
			if len(out) < 2 || out[0] != 5 {
				t.Fatalf("the pull proxy on 127.0.0.1:%s did not answer the pod as a SOCKS5 server: %q", port, out)
			}
			if bytes.Contains(out, []byte("HTTP/1.")) || bytes.Contains(out, []byte("repositories")) {
				t.Fatalf("the pod reached the host's registry through the pull proxy: %q", out)
			}
		})
	}
}

// defaultGateway reads the default route's gateway from /proc/net/route.
func defaultGateway(routes string) string {
	for _, line := range strings.Split(routes, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, binary.LittleEndian.Uint32(b))
		return ip.String()
	}
	return ""
}

func readProxyURL(t *testing.T, d *daemon) *url.URL {
	data, err := os.ReadFile(filepath.Join(d.runroot, "pull-proxy.url"))
	if err != nil {
		t.Fatalf("crib published no pull proxy: %v", err)
	}
	u, err := url.Parse(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// The SOCKS5 bytes, as printf escapes, of a greeting offering no
// authentication, then a CONNECT to 127.0.0.1:5000 and an HTTP request.
func socksGreetingNoAuth() string {
	return octal([]byte{5, 1, 0}) + socksConnectRegistry()
}

// A greeting offering username/password, a login, then the CONNECT.
func socksGreetingLogin(user, pass string) string {
	login := append([]byte{5, 1, 2, 1, byte(len(user))}, user...)
	login = append(append(login, byte(len(pass))), pass...)
	return octal(login) + socksConnectRegistry()
}

func socksConnectRegistry() string {
	return octal([]byte{5, 1, 0, 1, 127, 0, 0, 1, 5000 >> 8, 5000 & 0xff}) + `GET /v2/_catalog HTTP/1.0\r\n\r\n`
}

func octal(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		fmt.Fprintf(&s, `\%03o`, c)
	}
	return s.String()
}
