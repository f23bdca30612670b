package rootless

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The parent and the child sides run in one network namespace here; the
// crossing itself is covered by the integration tests with a real crib.
func startTestPortal(t *testing.T) (*PortalClient, *portal) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	targetSock := filepath.Join(dir, targetDialSocketName)
	tl, err := net.Listen("unix", targetSock)
	if err != nil {
		t.Fatal(err)
	}
	go serveDialRelay(ctx, tl, nil, log)
	p := newPortal(targetSock, log)
	t.Cleanup(p.closeAll)
	controlSock := filepath.Join(dir, controlSocketName)
	cl, err := net.Listen("unix", controlSock)
	if err != nil {
		t.Fatal(err)
	}
	go p.serveControl(ctx, cl)
	return &PortalClient{controlSock: controlSock}, p
}

func freePort(t *testing.T, proto string) int {
	t.Helper()
	if proto == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestPortalForwardsTCPAndUDP(t *testing.T) {
	client, _ := startTestPortal(t)
	ctx := context.Background()

	echoTCP, _ := net.Listen("tcp", "127.0.0.1:0")
	defer echoTCP.Close()
	go func() {
		for {
			c, err := echoTCP.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	echoUDP, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer echoUDP.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echoUDP.ReadFrom(buf)
			if err != nil {
				return
			}
			echoUDP.WriteTo([]byte(strings.ToUpper(string(buf[:n]))), from)
		}
	}()

	tcpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	err := client.Expose(ctx, "pod1", []PortForward{
		{Protocol: "tcp", HostIP: "127.0.0.1", HostPort: tcpPort, Target: echoTCP.Addr().String()},
		{Protocol: "udp", HostIP: "127.0.0.1", HostPort: udpPort, Target: echoUDP.LocalAddr().String()},
	})
	if err != nil {
		t.Fatal(err)
	}

	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(tcpPort))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("tcp echo: %q %v", buf, err)
	}
	c.Close()

	u, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(udpPort))
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("hello"))
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply := make([]byte, 16)
	n, err := u.Read(reply)
	if err != nil || string(reply[:n]) != "HELLO" {
		t.Fatalf("udp echo: %q %v", reply[:n], err)
	}
	u.Close()

	// Exposing a port that is taken fails and binds nothing of the request.
	taken, _ := net.Listen("tcp", "127.0.0.1:0")
	defer taken.Close()
	other := freePort(t, "tcp")
	err = client.Expose(ctx, "pod2", []PortForward{
		{Protocol: "tcp", HostIP: "127.0.0.1", HostPort: other, Target: echoTCP.Addr().String()},
		{Protocol: "tcp", HostIP: "127.0.0.1", HostPort: taken.Addr().(*net.TCPAddr).Port, Target: echoTCP.Addr().String()},
	})
	if err == nil {
		t.Fatal("expose of a taken port succeeded")
	}
	if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(other)); err != nil {
		t.Fatalf("port %d stayed bound after a failed expose: %v", other, err)
	} else {
		l.Close()
	}

	if err := client.Unexpose(ctx, "pod1"); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(tcpPort), time.Second); err == nil {
		t.Fatal("port still forwarded after unexpose")
	}
	if err := client.Unexpose(ctx, "never-exposed"); err != nil {
		t.Fatalf("unexpose of nothing: %v", err)
	}
}
