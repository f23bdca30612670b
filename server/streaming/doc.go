// Package streaming owns crib's streaming server: the single-use URLs
// the CRI returns for exec, attach and port-forward (sessions.go) and the
// sessions behind them, SPDY through k8s.io/cri-streaming's protocol
// handlers and WebSocket itself (server.go, websocket.go). Rootless, it
// listens on the same address and port in crib's network namespace and,
// through HostPorts (the parent's portal), in the host's, so the one URL
// works for a client in either (crictl on the host, a kubelet joined with
// `crib unshare`). TLS, when configured, ends here in the child: the
// portal forwards bytes.
//
// It reaches containers and pods only through the Runtime interface the
// wiring passes in: it must not import runtime, sandbox or the rootless
// bootstrap, nor turn errors into gRPC codes beyond its own session
// limits.
package streaming
