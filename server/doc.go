// Package server owns crib's daemon life and its wiring: `crib serve`
// (serve.go), the instance lock, systemd's notifications and socket
// activation, the daemon itself (daemon.go: the CRI listener, image
// storage, the pod and container machinery of parts.go, the gRPC server,
// signals and the drain), start-up recovery, metrics, the image
// configuration in force, and where crib's processes and pods sit in the
// cgroup tree.
//
// What it wires lives below it: the rootless bootstrap and the host
// bridge in server/rootless (server starts the parent and runs the daemon
// that the child stage prepared), the streaming server in
// server/streaming (which reaches containers and pods only through the
// adapter in streams.go), the host checks in server/doctor, and the CRI
// surface in cri.
//
// server must not know CRI message shapes: those belong to package cri.
package server
