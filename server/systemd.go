package server

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/crib-dev/crib/internal/sdnotify"
)

// What crib does for systemd: it tells the service manager when it is
// ready and when it is stopping (sd_notify, for Type=notify units), and it
// serves the CRI socket systemd hands over (socket activation, crib.socket)
// instead of making its own. Without systemd both are no-ops.
//
// Rootless, the process systemd starts and watches (MainPID) is the
// parent; the daemon runs in the child, in crib's namespaces. So the parent
// sends the notifications, once the child reports on the ready pipe, and
// passes the activated socket down to the child as an inherited file
// (package rootless).

// systemdHandoff is what crib took from systemd at start.
type systemdHandoff struct {
	notify sdnotify.Notifier
	// socket is the activated CRI socket; nil without socket activation.
	socket *os.File
}

// takeSystemdHandoff reads NOTIFY_SOCKET and the LISTEN_* variables once
// and clears them, so that nothing crib starts (the child, conmon, runc)
// sends notifications in crib's name or claims crib's socket.
func takeSystemdHandoff(log *slog.Logger) (systemdHandoff, error) {
	h := systemdHandoff{notify: sdnotify.Notifier{Socket: os.Getenv("NOTIFY_SOCKET"), Log: log}}
	os.Unsetenv("NOTIFY_SOCKET")
	// Files checks LISTEN_PID against this process and unsets the
	// variables either way.
	files := activation.Files(true)
	switch len(files) {
	case 0:
	case 1:
		h.socket = files[0]
	default:
		for _, f := range files {
			f.Close()
		}
		return h, fmt.Errorf("systemd passed %d sockets; crib serves exactly one CRI socket (one ListenStream= in crib.socket)", len(files))
	}
	return h, nil
}

// openCRIListener serves the activated socket when systemd passed one and
// otherwise listens on path. The returned function closes the listener;
// it removes the socket file only when crib made it: an activated socket
// belongs to systemd, which keeps listening while crib restarts.
func openCRIListener(path string, activated *os.File, log *slog.Logger) (net.Listener, func(), error) {
	if activated == nil {
		l, err := listenCRI(path, log)
		if err != nil {
			return nil, nil, err
		}
		return l, func() { l.Close(); os.Remove(path) }, nil
	}
	l, err := net.FileListener(activated)
	activated.Close() // FileListener holds its own duplicate
	if err != nil {
		return nil, nil, fmt.Errorf("using the socket systemd passed: %w", err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, nil, fmt.Errorf("the socket systemd passed is %s, not a unix stream socket (crib.socket needs ListenStream=PATH)", l.Addr().Network())
	}
	ul.SetUnlinkOnClose(false)
	return ul, func() { ul.Close() }, nil
}
