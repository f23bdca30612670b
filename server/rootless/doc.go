// Package rootless owns crib's rootless bootstrap and its bridge to the
// host: the parent in the host namespaces (parent.go), the namespace
// holder and its outbound helper (holder.go, outbound.go), the daemon's
// start in crib's namespaces (child.go, copyup.go, node.go), `crib
// unshare` and the re-entry of `crib image` (unshare.go), and the host
// side the parent serves the daemon: the host dialer and pull proxy
// (hostdial.go, hostside.go) and the portal that binds host ports
// (portal.go). The parent/child protocol is protocol.go, the only place
// that reads or writes crib's internal _CRIB_* environment.
//
// It hands the daemon its namespaces, a Child or a HostSide; it must not
// run the daemon, know CRI, pods or containers, or import the packages
// that do: the wiring (package server) calls in, with callbacks where
// the parent needs the daemon's decisions (PlaceCgroups).
package rootless
