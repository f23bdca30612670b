package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/steptrace"
	"github.com/crib-dev/crib/sandbox"
)

// StopPodSandbox stops every container of the pod at once, then tears down
// its network. Stopping an unknown or stopped sandbox succeeds.
func (s *RuntimeService) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	sb, err := s.findPod(req.GetPodSandboxId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	// Exclusive: creates and starts in flight finish first, so every
	// container they made is listed below; later ones see the pod stopped.
	unlock := s.podLocks.exclusive(sb.ID)
	defer unlock()
	for _, c := range s.podContainers(sb.ID) {
		if err := s.containers.Stop(ctx, c.ID, 0); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return nil, err
		}
		s.nriStopped(ctx, c.ID)
	}
	steptrace.Mark(ctx, "containers")
	if now, err := s.pods.Get(sb.ID); err == nil && now.State == sandbox.StateReady {
		if err := s.nri.StopPodSandbox(ctx, nriPod(now)); err != nil {
			return nil, err
		}
	}
	steptrace.Mark(ctx, "nri")
	if err := s.pods.Stop(ctx, sb.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes the pod's containers (stopping them first) and
// then the pod. Removing an unknown sandbox succeeds.
func (s *RuntimeService) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	sb, err := s.findPod(req.GetPodSandboxId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	// Exclusive: creates and starts in flight finish first, so every
	// container they made is listed below; later ones see the pod stopped.
	unlock := s.podLocks.exclusive(sb.ID)
	defer unlock()
	for _, c := range s.podContainers(sb.ID) {
		if err := s.removeContainer(ctx, c.ID); err != nil {
			return nil, err
		}
	}
	// The pod's cgroup and run dir go after its containers' own.
	if err := s.reclaims.settle(ctx, sb.ID); err != nil {
		return nil, err
	}
	steptrace.Mark(ctx, "containers reclaimed")
	if now, err := s.pods.Get(sb.ID); err == nil && now.State == sandbox.StateReady {
		s.nri.StopPodSandbox(ctx, nriPod(now)) // a removal stops the pod first
	}
	if err := s.nri.RemovePodSandbox(ctx, nriPod(sb)); err != nil {
		s.log.Warn("nri RemovePodSandbox", "id", sb.ID, "err", err)
	}
	if err := s.pods.Remove(ctx, sb.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	s.podNames.release(podName(sb.Config.GetMetadata()))
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// PodSandboxStatus reports one sandbox; verbose adds crib's record.
func (s *RuntimeService) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	sb, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: podStatus(sb)}
	if req.GetVerbose() {
		info, _ := json.Marshal(sb)
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func podStatus(sb *sandbox.Sandbox) *runtimeapi.PodSandboxStatus {
	cfg := sb.Config
	st := &runtimeapi.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       cfg.GetMetadata(),
		State:          podState(sb),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: sb.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if sb.IP != "" {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: sb.IP}
		for _, ip := range sb.AdditionalIPs {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

func podState(sb *sandbox.Sandbox) runtimeapi.PodSandboxState {
	if sb.State == sandbox.StateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// ListPodSandbox lists sandboxes, filtered by id (or a unique prefix),
// state and labels.
func (s *RuntimeService) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f := req.GetFilter()
	resp := &runtimeapi.ListPodSandboxResponse{}
	for _, sb := range s.pods.List() {
		if s.hidden.hidden(sb.ID) || f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != podState(sb) {
			continue
		}
		if !labelsMatch(sb.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		resp.Items = append(resp.Items, &runtimeapi.PodSandbox{
			Id:             sb.ID,
			Metadata:       sb.Config.GetMetadata(),
			State:          podState(sb),
			CreatedAt:      sb.CreatedAt.UnixNano(),
			Labels:         sb.Config.GetLabels(),
			Annotations:    sb.Config.GetAnnotations(),
			RuntimeHandler: sb.RuntimeHandler,
		})
	}
	return resp, nil
}

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// findPod resolves an id or a unique id prefix, as crictl lets operators
// type short ids.
func (s *RuntimeService) findPod(id string) (*sandbox.Sandbox, error) {
	if id == "" {
		return nil, invalid("pod sandbox id is empty")
	}
	sb, err := s.pods.Resolve(id)
	if err == nil && s.hidden.hidden(sb.ID) {
		// a pod its RunPodSandbox plugins have not accepted yet (cri/nri.go)
		return nil, fmt.Errorf("pod sandbox %s: %w", errdefs.Quote(id), errdefs.ErrNotFound)
	}
	return sb, err
}

// PodSandboxStats reports one pod's usage.
func (s *RuntimeService) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	sb, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.pods.Stats(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	s.addContainerStats(ctx, st)
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports the usage of the pods the filter selects.
func (s *RuntimeService) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	f := req.GetFilter()
	resp := &runtimeapi.ListPodSandboxStatsResponse{}
	for _, sb := range s.pods.List() {
		if f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) {
			continue
		}
		if !labelsMatch(sb.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		st, err := s.pods.Stats(ctx, sb.ID)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, err
		}
		s.addContainerStats(ctx, st)
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

func (s *RuntimeService) addContainerStats(ctx context.Context, st *runtimeapi.PodSandboxStats) {
	if st.GetLinux() == nil || st.Attributes == nil {
		return
	}
	for _, c := range s.podContainers(st.Attributes.Id) {
		if c.State != "running" {
			continue
		}
		if cs, err := s.containers.Stats(ctx, c.ID); err == nil {
			st.Linux.Containers = append(st.Linux.Containers, cs)
		}
	}
}
