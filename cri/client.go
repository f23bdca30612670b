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
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	resp, err := runtimeapi.NewRuntimeServiceClient(conn).RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		return "", fmt.Errorf("asking crib on %s for its cgroup driver (is it running? start it with 'crib serve'): %w", socket, err)
	}
	if resp.GetLinux().GetCgroupDriver() == runtimeapi.CgroupDriver_SYSTEMD {
		return "systemd", nil
	}
	return "cgroupfs", nil
}
