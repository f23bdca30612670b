package cri

import (
	"context"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/nri"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
)

// This file is the CRI side of the NRI plugin host (package nri): what
// plugins learn of pods and containers, and the pods hidden while their
// RunPodSandbox event is out. The RPC files call it at the points NRI
// defines; with NRI off (a nil *nri.Host) every call is a no-op.

// hiddenPods are pods made but not yet shown: a pod is not listed, has no
// status and takes no containers until every plugin accepted it.
type hiddenPods struct{ m sync.Map }

func (h *hiddenPods) hide(id string)             { h.m.Store(id, true) }
func (h *hiddenPods) show(id string)             { h.m.Delete(id) }
func (h *hiddenPods) hidden(id string) (ok bool) { _, ok = h.m.Load(id); return ok }

func nriPod(sb *sandbox.Sandbox) nri.Pod {
	p := nri.Pod{
		ID:             sb.ID,
		Config:         sb.Config,
		RuntimeHandler: sb.RuntimeHandler,
		NetNSPath:      sb.NetNSPath,
		CgroupParent:   sb.CgroupParent,
		Pid:            sb.ReaperPID,
	}
	if sb.IP != "" {
		p.IPs = append([]string{sb.IP}, sb.AdditionalIPs...)
	}
	return p
}

func nriContainer(c *runtime.Container) nri.Container {
	return nri.Container{
		ID: c.ID, PodID: c.SandboxID, Config: c.Config, State: c.State.CRI(), Pid: c.Pid,
		CreatedAt: c.CreatedAt, StartedAt: c.StartedAt, FinishedAt: c.FinishedAt,
		ExitCode: c.ExitCode, Reason: c.Reason, Message: c.Message,
	}
}

// nriPodOf is the pod of a container for an event; a pod already gone is
// named by its id alone.
func (s *RuntimeService) nriPodOf(id string) nri.Pod {
	if sb, err := s.pods.Get(id); err == nil {
		return nriPod(sb)
	}
	return nri.Pod{ID: id}
}

// nriStopped sends a container's StopContainer event (once, however many
// ways crib learns that it stopped).
func (s *RuntimeService) nriStopped(ctx context.Context, id string) {
	if s.nri == nil {
		return
	}
	if c, err := s.containers.Get(id); err == nil {
		s.nri.StopContainer(ctx, s.nriPodOf(c.SandboxID), nriContainer(c))
	}
}

// nriRunPod sends RunPodSandbox for a pod made while hidden; when a
// plugin refuses it, the pod is undone as if its creation had failed.
func (s *RuntimeService) nriRunPod(ctx context.Context, sb *sandbox.Sandbox) error {
	err := s.nri.RunPodSandbox(ctx, nriPod(sb))
	if err == nil {
		return nil
	}
	if stopErr := s.pods.Stop(ctx, sb.ID); stopErr != nil {
		s.log.Warn("undoing a pod an NRI plugin refused", "id", sb.ID, "err", stopErr)
	}
	if rmErr := s.pods.Remove(ctx, sb.ID); rmErr != nil {
		s.log.Warn("undoing a pod an NRI plugin refused", "id", sb.ID, "err", rmErr)
	}
	s.nri.RemovePodSandbox(ctx, nriPod(sb))
	return err
}

// nriCreate has plugins adjust spec for a container about to be created;
// done must be called once the container is recorded or has failed.
func (s *RuntimeService) nriCreate(ctx context.Context, sb *sandbox.Sandbox, id string, cfg *runtimeapi.ContainerConfig, spec *specs.Spec) (done func(), err error) {
	return s.nri.CreateContainer(ctx, nriPod(sb), nri.Container{ID: id, PodID: sb.ID, Config: cfg}, spec)
}

// nriCreateFailed tells plugins that saw a container's CreateContainer
// that it was not made after all.
func (s *RuntimeService) nriCreateFailed(ctx context.Context, sb *sandbox.Sandbox, id string, cfg *runtimeapi.ContainerConfig) {
	s.nri.RemoveContainer(ctx, nriPod(sb), nri.Container{ID: id, PodID: sb.ID, Config: cfg})
}

// NRIState lists the pods and containers a registering plugin is
// synchronised with.
func (s *RuntimeService) NRIState() ([]nri.Pod, []nri.Container) {
	var pods []nri.Pod
	for _, sb := range s.pods.List() {
		if !s.hidden.hidden(sb.ID) {
			pods = append(pods, nriPod(sb))
		}
	}
	var ctrs []nri.Container
	for _, c := range s.containers.List() {
		ctrs = append(ctrs, nriContainer(c))
	}
	return pods, ctrs
}

// NRIUpdate applies resources a plugin asked for on its own: what the
// plugin set (non-zero) over what the container has.
func (s *RuntimeService) NRIUpdate(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	c, err := s.containers.Get(id)
	if err != nil {
		return err
	}
	merged := &runtimeapi.LinuxContainerResources{}
	if cur := c.Config.GetLinux().GetResources(); cur != nil {
		merged = proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
	}
	proto.Merge(merged, r)
	return s.containers.Update(ctx, id, merged)
}
