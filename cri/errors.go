package cri

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Handlers in this package return plain errors: errdefs sentinels wrapped
// with context. They become gRPC codes once, here, by the interceptors
// ServerOptions installs, so no handler can forget a conversion and answer
// Unknown.

// ServerOptions returns the gRPC server options that convert the CRI
// handlers' errors to status codes. Pass them after any other interceptor
// of the server, so that logging and metrics see the codes clients see.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unaryErrors),
		grpc.ChainStreamInterceptor(streamErrors),
	}
}

func unaryErrors(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

func streamErrors(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return toStatus(handler(srv, ss))
}

// toStatus converts an error from crib's packages to a gRPC status error.
// Errors that already carry a status pass through; errors crib cannot name
// become Internal, never Unknown.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return codes.InvalidArgument
	case errors.Is(err, errdefs.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, errdefs.ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, errdefs.ErrFailedPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, errdefs.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, errdefs.ErrUnimplemented):
		return codes.Unimplemented
	case errors.Is(err, errdefs.ErrPermissionDenied):
		return codes.PermissionDenied
	}
	return codes.Internal
}

// invalid builds the error of a request that fails validation in this
// package.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}
