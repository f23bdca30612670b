// Package errdefs owns the error kinds that every layer of crib shares.
//
// Packages below cri wrap one of these sentinels with %w when a failure has a
// name a client can act on; the cri package converts them to gRPC status codes
// once, at the boundary. This package must not import gRPC.
package errdefs

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

var (
	// ErrInvalidArgument marks a request that can never succeed as written.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound marks a reference to an object that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists marks a create whose name or id is taken.
	ErrAlreadyExists = errors.New("already exists")
	// ErrFailedPrecondition marks a request that is valid but not in the
	// object's current state (exec into a stopped container, say).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable marks a dependency that cannot be reached now
	// (a registry, a helper binary); retrying later may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnimplemented marks a feature crib does not offer (yet).
	ErrUnimplemented = errors.New("not implemented")
	// ErrPermissionDenied marks an operation the unprivileged user may not do.
	ErrPermissionDenied = errors.New("permission denied")
)

// Is* helpers read better at call sites than errors.Is with a sentinel.

func IsNotFound(err error) bool           { return errors.Is(err, ErrNotFound) }
func IsAlreadyExists(err error) bool      { return errors.Is(err, ErrAlreadyExists) }
func IsInvalidArgument(err error) bool    { return errors.Is(err, ErrInvalidArgument) }
func IsFailedPrecondition(err error) bool { return errors.Is(err, ErrFailedPrecondition) }
func IsUnavailable(err error) bool        { return errors.Is(err, ErrUnavailable) }

// quoteLimit caps how much of a client's input an error message repeats:
// enough to recognise it, never enough that a 1 MiB name grows the log by
// megabytes.
const quoteLimit = 256

// Quote formats user input for an error message like %q, keeping at most
// its first 256 bytes and saying how long the whole was.
func Quote(s string) string {
	if len(s) <= quoteLimit {
		return strconv.Quote(s)
	}
	cut := quoteLimit
	// Do not split a UTF-8 sequence: back up to the start of a rune.
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
