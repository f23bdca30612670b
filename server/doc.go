// Package server owns crib's daemon life: the rootless bootstrap (a parent
// in the host namespaces, a child re-executed into a new user, mount and
// network namespace mapped through newuidmap/newgidmap), the outbound
// network helper (slirp4netns or pasta), the instance lock, the gRPC
// listener, signals, and the wiring of the cri, sandbox, runtime and storage
// packages.
//
// The parent stays in the host namespaces for the lifetime of the daemon:
// it owns what must be reachable from the host (dialing out for image
// pulls, and in later issues host ports and the streaming server) and it
// reaps its own helpers.
//
// server must not know CRI message shapes: those belong to package cri.
package server
