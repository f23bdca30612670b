package sandbox

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
)

// TestDialInNetNS dials a server that only exists in a network namespace
// another process made (unshare), and checks the same address is closed
// in the test's own namespace.
func TestDialInNetNS(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox is not installed")
	}
	srv := exec.Command("unshare", "--net", "sh", "-c", "ip link set lo up && exec busybox nc -ll -p 7777 -e busybox echo pong")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	nsPath := "/proc/" + strconv.Itoa(srv.Process.Pid) + "/ns/net"

	var reply []byte
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := DialInNetNS(context.Background(), nsPath, "127.0.0.1:7777")
		if err == nil {
			reply, err = io.ReadAll(c)
			c.Close()
		}
		if err == nil && len(reply) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dialing in the namespace: %v (reply %q)", err, reply)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if string(reply) != "pong\n" {
		t.Errorf("reply %q", reply)
	}
	if c, err := net.Dial("tcp", "127.0.0.1:7777"); err == nil {
		c.Close()
		t.Error("the server is reachable from the test's own namespace: the dial did not change namespace")
	}
	own, _ := os.Readlink("/proc/thread-self/ns/net")
	for range 20 { // every thread is back in its own namespace
		if ns, _ := os.Readlink("/proc/thread-self/ns/net"); ns != own {
			t.Fatalf("a thread was left in %s", ns)
		}
	}
	if _, err := DialInNetNS(context.Background(), "/nonexistent/ns", "127.0.0.1:1"); err == nil {
		t.Error("dial in a missing namespace succeeded")
	}
}

// TestDialPort: a pod on crib's network is dialled in crib's namespace;
// unknown, stopped pods and bad ports are refused with the right kind.
func TestDialPort(t *testing.T) {
	needRoot(t)
	m := newTestManager(t, testOptions(t))
	mustCreate(t, m, "pf", hostNetwork(podConfig("pf")))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello")
			c.Close()
		}
	}()
	port := int32(l.Addr().(*net.TCPAddr).Port)
	c, err := m.DialPort(context.Background(), "pf", port)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "hello" {
		t.Errorf("read %q", got)
	}

	mustCreate(t, m, "pf-stopped", hostNetwork(podConfig("pf-stopped")))
	if err := m.Stop(context.Background(), "pf-stopped"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		port int32
		want func(error) bool
	}{
		{"nope", port, errdefs.IsNotFound},
		{"pf-stopped", port, errdefs.IsFailedPrecondition},
		{"pf", 0, errdefs.IsInvalidArgument},
		{"pf", 70000, errdefs.IsInvalidArgument},
	} {
		if c, err := m.DialPort(context.Background(), tc.id, tc.port); !tc.want(err) {
			t.Errorf("DialPort(%s, %d): %v", tc.id, tc.port, err)
			if c != nil {
				c.Close()
			}
		}
	}
}
