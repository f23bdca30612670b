package cri

import (
	"context"
	"fmt"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// RunPodSandbox creates and starts a pod sandbox. The sandbox package
// rolls back its own steps; this layer releases the name on failure.
func (s *RuntimeService) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (_ *runtimeapi.RunPodSandboxResponse, retErr error) {
	cfg := req.GetConfig()
	if err := validatePodConfig(cfg); err != nil {
		return nil, err
	}
	handler := req.GetRuntimeHandler()
	if err := s.checkHandler(handler); err != nil {
		return nil, err
	}
	id := newID()
	name := podName(cfg.GetMetadata())
	if err := s.podNames.reserve(name, id); err != nil {
		return nil, fmt.Errorf("pod sandbox %w", err)
	}
	defer func() {
		if retErr != nil {
			s.podNames.release(name)
		}
	}()
	sb, err := s.pods.Create(ctx, id, cfg, handler)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: sb.ID}, nil
}

func (s *RuntimeService) checkHandler(handler string) error {
	if handler == "" || slices.Contains(s.opts.Host.Handlers, handler) {
		return nil
	}
	return invalid("runtime handler %s is not configured (crib has %v)", errdefs.Quote(handler), s.opts.Host.Handlers)
}
