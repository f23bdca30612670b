package cri

import (
	"context"
	"fmt"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

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

// TestServerOptionsInnermost: an interceptor the daemon chains before
// ServerOptions (its log and metrics) sees the code the client sees, not
// the handler's plain error.
func TestServerOptionsInnermost(t *testing.T) {
	var seen codes.Code
	outer := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		seen = status.Code(err)
		return resp, err
	}
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(outer)}, ServerOptions()...)...)
	Register(srv, newFakeEnv(t, "").svc, NewImageService(nil))
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: "nope"})
	if got := status.Code(err); got != codes.NotFound || seen != codes.NotFound {
		t.Fatalf("client saw %v, outer interceptor %v; want NotFound for both", got, seen)
	}
}
