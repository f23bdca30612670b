package cri

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
)

// Exec, Attach and PortForward check the target here, so that a client
// learns at once that it is missing or stopped, and return the URL of a
// session the streaming server runs. The request the server keeps carries
// the full id, not the prefix the client may have given.

// Exec prepares a streaming exec in a running container.
func (s *RuntimeService) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if s.opts.Streaming == nil {
		return nil, fmt.Errorf("streaming is not configured: %w", errdefs.ErrUnimplemented)
	}
	if err := validateCmd(req.GetCmd()); err != nil {
		return nil, err
	}
	if err := validateStdio(req.GetTty(), req.GetStdin(), req.GetStdout(), req.GetStderr()); err != nil {
		return nil, err
	}
	c, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	r := proto.Clone(req).(*runtimeapi.ExecRequest)
	r.ContainerId = c.ID
	return s.opts.Streaming.GetExec(r)
}

// Attach prepares a streaming attach to a running container's stdio.
func (s *RuntimeService) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if s.opts.Streaming == nil {
		return nil, fmt.Errorf("streaming is not configured: %w", errdefs.ErrUnimplemented)
	}
	if err := validateStdio(req.GetTty(), req.GetStdin(), req.GetStdout(), req.GetStderr()); err != nil {
		return nil, err
	}
	c, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	r := proto.Clone(req).(*runtimeapi.AttachRequest)
	r.ContainerId = c.ID
	return s.opts.Streaming.GetAttach(r)
}

// PortForward prepares a port-forward session into a ready pod.
func (s *RuntimeService) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if s.opts.Streaming == nil {
		return nil, fmt.Errorf("streaming is not configured: %w", errdefs.ErrUnimplemented)
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, invalid("port %d is not a port number", p)
		}
	}
	sb, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb.State != sandbox.StateReady {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	r := proto.Clone(req).(*runtimeapi.PortForwardRequest)
	r.PodSandboxId = sb.ID
	return s.opts.Streaming.GetPortForward(r)
}

// validateStdio rejects sessions no client could use: a terminal merges
// stderr into stdout, and a session with no stream has nothing to carry.
func validateStdio(tty, stdin, stdout, stderr bool) error {
	switch {
	case tty && stderr:
		return invalid("a terminal session has no separate stderr: tty and stderr cannot both be set")
	case !stdin && !stdout && !stderr:
		return invalid("at least one of stdin, stdout and stderr must be set")
	}
	return nil
}

// runningContainer resolves id and checks the container runs now.
func (s *RuntimeService) runningContainer(id string) (*runtime.Container, error) {
	c, err := s.findContainer(id)
	if err != nil {
		return nil, err
	}
	if fresh, err := s.containers.Status(c.ID); err == nil {
		c = fresh
	}
	if c.State != runtime.StateRunning {
		return nil, fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}
