package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() string {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	n := Notifier{Socket: path}
	n.Ready("serving CRI on /x")
	if got := read(); got != "READY=1\nSTATUS=serving CRI on /x" {
		t.Fatalf("ready sent %q", got)
	}
	n.Stopping()
	if got := read(); !strings.HasPrefix(got, "STOPPING=1\n") {
		t.Fatalf("stopping sent %q", got)
	}
	// Without a socket nothing is sent and nothing fails.
	Notifier{}.Ready("x")
}
