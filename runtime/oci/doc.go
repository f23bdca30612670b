// Package oci is crib's seam to the OCI runtime and its monitor: the one
// place where a runc, crun or conmon command line is built and run.
//
// Runtime is the interface runtime.Manager drives: create (through the
// monitor, conmon, which outlives crib), start, kill, delete, state,
// update and exec. New picks the implementation by the handler's name
// (runc or crun; their command lines differ in places, see cli.go); the
// package ocifake has a fake for tests that need neither root nor a
// runtime binary.
//
// Every command runs through a Runner (runtime.Reaper in the daemon), so
// the subreaper that reaps crib's orphans never steals an exit status
// crib waits for.
//
// Errors a caller acts on wrap internal/errdefs sentinels (a container the
// runtime does not know is errdefs.ErrNotFound); everything else carries
// the runtime's own message.
package oci
