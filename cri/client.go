package cri

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The client side, for crib's own commands that ask a running crib over
// its socket (`crib kubelet-config`): the CRI message shapes stay here.

// clientTimeout bounds one question to a running crib.
const clientTimeout = 5 * time.Second

// RuntimeCgroupDriver is the cgroup driver ("cgroupfs" or "systemd") the
// crib serving socket reports in RuntimeConfig.
func RuntimeCgroupDriver(ctx context.Context, socket string) (string, error) {
	var resp *runtimeapi.RuntimeConfigResponse
	err := askCrib(ctx, socket, func(ctx context.Context, c runtimeapi.RuntimeServiceClient) (err error) {
		resp, err = c.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("asking crib on %s for its cgroup driver (is it running? start it with 'crib serve'): %w", socket, err)
	}
	if resp.GetLinux().GetCgroupDriver() == runtimeapi.CgroupDriver_SYSTEMD {
		return "systemd", nil
	}
	return "cgroupfs", nil
}

// RuntimeUserNamespaces reports whether the crib serving socket offers pod
// user namespaces on its default handler; an error reads as no.
func RuntimeUserNamespaces(ctx context.Context, socket string) bool {
	var resp *runtimeapi.StatusResponse
	err := askCrib(ctx, socket, func(ctx context.Context, c runtimeapi.RuntimeServiceClient) (err error) {
		resp, err = c.Status(ctx, &runtimeapi.StatusRequest{})
		return err
	})
	if err != nil {
		return false
	}
	for _, h := range resp.GetRuntimeHandlers() {
		if h.GetName() == "" {
			return h.GetFeatures().GetUserNamespaces()
		}
	}
	return false
}

// askCrib dials socket and runs one call, bounded by clientTimeout.
func askCrib(ctx context.Context, socket string, call func(context.Context, runtimeapi.RuntimeServiceClient) error) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	return call(ctx, runtimeapi.NewRuntimeServiceClient(conn))
}
