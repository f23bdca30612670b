//go:build integration

package server_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// systemd is not PID 1 on the test machines, so the test plays its part:
// it makes the notification socket and the CRI socket, and starts crib as
// a Type=notify, socket-activated service would be started: the socket at
// fd 3, LISTEN_FDS=1, LISTEN_PID the pid of crib itself (sh sets it to its
// own pid and then executes crib, which keeps the pid), NOTIFY_SOCKET set.

type notifyMsg struct {
	text string
	pid  int32
}

// listenNotifySocket is systemd's side: a datagram socket that learns
// each sender's pid (SO_PASSCRED), as systemd checks NotifyAccess=main.
func listenNotifySocket(t *testing.T, dir string) (string, <-chan notifyMsg) {
	path := filepath.Join(dir, "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	os.Chmod(path, 0o666)
	raw, _ := c.SyscallConn()
	raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1) })
	msgs := make(chan notifyMsg, 16)
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			m := notifyMsg{text: string(buf[:n])}
			if scms, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, s := range scms {
					if cred, err := syscall.ParseUnixCredentials(&s); err == nil {
						m.pid = cred.Pid
					}
				}
			}
			msgs <- m
		}
	}()
	return path, msgs
}

func waitNotify(t *testing.T, msgs <-chan notifyMsg, prefix string, d *daemon) notifyMsg {
	t.Helper()
	select {
	case m := <-msgs:
		if !strings.HasPrefix(m.text, prefix) {
			t.Fatalf("notification %q, want %s", m.text, prefix)
		}
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s notification:\n%s", prefix, d.out)
	}
	return notifyMsg{}
}

func TestIntegrationSystemdNotifyAndActivation(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	dir, err := os.MkdirTemp("", "crib-it-systemd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	notifyPath, msgs := listenNotifySocket(t, dir)

	// systemd makes the socket before crib runs (DirectoryMode=0700).
	if err := os.MkdirAll(d.runroot, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(d.runroot, u.uid, u.gid)
	l, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	sockFile, _ := l.(*net.UnixListener).File()
	l.Close() // crib gets sockFile; systemd would keep its own copy
	before, _ := os.Stat(d.socket)

	args := append([]string{"sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 NOTIFY_SOCKET=` + notifyPath + ` exec "$@"`, "sh"},
		d.args("--log-level", "debug")...)
	d.out = &bytes.Buffer{}
	d.cmd = u.command(args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.ExtraFiles = []*os.File{sockFile}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sockFile.Close()
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()

	ready := waitNotify(t, msgs, "READY=1", d)
	if int(ready.pid) != d.cmd.Process.Pid {
		t.Errorf("READY=1 came from pid %d; systemd accepts it from the main pid %d (crib's parent) only", ready.pid, d.cmd.Process.Pid)
	}

	t.Run("serves the socket systemd passed", func(t *testing.T) {
		c, err := grpcDial(d.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := runtimeapi.NewRuntimeServiceClient(c).Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
			t.Fatalf("Version over the activated socket: %v\n%s", err, d.out)
		}
		after, err := os.Stat(d.socket)
		if err != nil || !os.SameFile(before, after) {
			t.Fatalf("crib replaced systemd's socket file: %v", err)
		}
	})

	t.Run("the child sees neither NOTIFY_SOCKET nor LISTEN_FDS", func(t *testing.T) {
		environ, err := os.ReadFile("/proc/" + strconv.Itoa(d.childPID(t)) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"NOTIFY_SOCKET=", "LISTEN_FDS=", "LISTEN_PID="} {
			if bytes.Contains(environ, []byte("\x00"+v)) || bytes.HasPrefix(environ, []byte(v)) {
				t.Errorf("child inherited %s", v)
			}
		}
	})

	t.Run("SIGTERM sends STOPPING=1 and leaves the socket to systemd", func(t *testing.T) {
		d.cmd.Process.Signal(syscall.SIGTERM)
		stopping := waitNotify(t, msgs, "STOPPING=1", d)
		if int(stopping.pid) != d.cmd.Process.Pid {
			t.Errorf("STOPPING=1 came from pid %d, want %d", stopping.pid, d.cmd.Process.Pid)
		}
		select {
		case err := <-d.exited:
			if err != nil {
				t.Fatalf("crib exited with %v:\n%s", err, d.out)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("crib did not stop:\n%s", d.out)
		}
		if _, err := os.Stat(d.socket); err != nil {
			t.Errorf("crib removed systemd's socket: %v", err)
		}
	})
}
