// Package sdnotify sends systemd service notifications (sd_notify) for
// Type=notify units: ready and stopping. It is its own package because
// two programs send them: `crib serve` rootful, and the host-side parent
// (cmd/crib-hostside, or crib itself) rootless.
package sdnotify

import (
	"log/slog"
	"net"
)

// Notifier sends notifications to the socket systemd named in
// NOTIFY_SOCKET; with no socket it does nothing.
type Notifier struct {
	Socket string
	Log    *slog.Logger
}

// Ready tells systemd the service is up, with a status line.
func (n Notifier) Ready(status string) { n.send("READY=1\nSTATUS=" + status) }

// Stopping tells systemd the service is stopping.
func (n Notifier) Stopping() { n.send("STOPPING=1\nSTATUS=stopping") }

// send delivers one notification. A failure is logged, not returned:
// systemd not hearing crib is worth a warning, never a reason to stop.
func (n Notifier) send(state string) {
	if n.Socket == "" {
		return
	}
	// A name starting with @ is an abstract socket; package net maps it.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.Socket, Net: "unixgram"})
	if err == nil {
		_, err = c.Write([]byte(state))
		c.Close()
	}
	if err != nil && n.Log != nil {
		n.Log.Warn("notifying systemd", "socket", n.Socket, "err", err)
	}
}
