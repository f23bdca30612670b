// Package cri owns crib's CRI v1 surface: the RuntimeService and
// ImageService gRPC servers, request validation, translation between CRI
// messages and crib's packages, and the conversion of errors to gRPC status
// codes, done once, here.
//
// One file per RPC group, in the manner of containerd's CRI server. Every
// RPC that crib does not implement yet is answered by the embedded
// Unimplemented servers (codes.Unimplemented), never by a fake success.
//
// cri must not make syscalls or run programs: whatever touches the host is
// reached through the sandbox, runtime and storage packages, or is handed in
// by the server package at wiring time (Options).
package cri
