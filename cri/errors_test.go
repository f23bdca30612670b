package cri

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crib-dev/crib/internal/errdefs"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("pod x: %w", errdefs.ErrNotFound), codes.NotFound},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", errdefs.ErrInvalidArgument)), codes.InvalidArgument},
		{fmt.Errorf("%w", errdefs.ErrAlreadyExists), codes.AlreadyExists},
		{fmt.Errorf("%w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{fmt.Errorf("registry: %w", errdefs.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("%w", errdefs.ErrUnimplemented), codes.Unimplemented},
		{fmt.Errorf("%w", errdefs.ErrPermissionDenied), codes.PermissionDenied},
		{fmt.Errorf("pull: %w", context.Canceled), codes.Canceled},
		{status.Error(codes.Aborted, "x"), codes.Aborted},
		{fmt.Errorf("something unnamed"), codes.Internal},
	}
	for _, tc := range tests {
		got := status.Code(toStatus(tc.err))
		if got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.err, got, tc.want)
		}
	}
	if toStatus(nil) != nil {
		t.Fatal("nil error became a status")
	}
}
