package server

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTakeSystemdHandoffClearsNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/x/notify")
	t.Setenv("LISTEN_FDS", "")
	h, err := takeSystemdHandoff(nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.notify.Socket != "/run/x/notify" || h.socket != nil {
		t.Fatalf("handoff %+v", h)
	}
	if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
		t.Fatalf("NOTIFY_SOCKET left for children: %q", v)
	}
}

func TestOpenCRIListenerActivated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crib.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // systemd's copy would stay; f is crib's
	got, closeCRI, err := openCRIListener(filepath.Join(t.TempDir(), "other.sock"), f, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if c, err := got.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dialing the activated socket: %v", err)
	}
	buf := make([]byte, 2)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q %v", buf, err)
	}
	c.Close()
	closeCRI()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("closing removed systemd's socket file: %v", err)
	}
}

func TestOpenCRIListenerRefusesNonUnix(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, _ := l.(*net.TCPListener).File()
	if _, _, err := openCRIListener("/nonexistent", f, slog.Default()); err == nil || !strings.Contains(err.Error(), "not a unix stream socket") {
		t.Fatalf("tcp socket accepted: %v", err)
	}
}

// TestTakeSystemdHandoffSocket runs the test binary again the way systemd
// starts a socket-activated service: the socket at fd 3, LISTEN_FDS=1 and
// LISTEN_PID equal to the pid of the process that reads them (sh sets it
// to its own pid, then execs, keeping the pid and the descriptor).
func TestTakeSystemdHandoffSocket(t *testing.T) {
	if os.Getenv("CRIB_TEST_ACTIVATION_CHILD") == "1" {
		h, err := takeSystemdHandoff(nil)
		if err != nil || h.socket == nil {
			fmt.Printf("no socket: %v\n", err)
			os.Exit(1)
		}
		l, closeCRI, err := openCRIListener("/nonexistent/crib.sock", h.socket, slog.Default())
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		defer closeCRI()
		fmt.Printf("serving %s; LISTEN_FDS=%q\n", l.Addr(), os.Getenv("LISTEN_FDS"))
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "crib.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, _ := l.(*net.UnixListener).File()
	for _, tc := range []struct {
		name, pid string
		want      string
	}{
		{"LISTEN_PID names the reader", "$$", "serving " + path + `; LISTEN_FDS=""`},
		{"LISTEN_PID names another process", "1", "no socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", `LISTEN_PID=`+tc.pid+` LISTEN_FDS=1 exec "$0" -test.run '^TestTakeSystemdHandoffSocket$'`, os.Args[0])
			cmd.Env = append(os.Environ(), "CRIB_TEST_ACTIVATION_CHILD=1")
			cmd.ExtraFiles = []*os.File{f}
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("child printed %q, want %q", out, tc.want)
			}
		})
	}
}
