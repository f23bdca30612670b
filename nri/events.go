package nri

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The events, in the order NRI defines them for one pod: RunPodSandbox;
// per container CreateContainer (adjusting the spec), PostCreate,
// StartContainer, PostStart, UpdateContainer/PostUpdate, StopContainer,
// RemoveContainer; then StopPodSandbox and RemovePodSandbox. The callers
// (package cri) send each at its point in the CRI call; a plugin's error
// fails the call, a plugin that times out or crashes is dropped and the
// call goes on.

// RunPodSandbox tells plugins of a pod that is made but not yet shown to
// clients; an error fails RunPodSandbox. Plugin registration waits for
// it, so a registering plugin either finds the pod in its
// synchronisation or gets this event.
func (h *Host) RunPodSandbox(ctx context.Context, p Pod) error {
	if h == nil {
		return nil
	}
	defer h.a.BlockPluginSync().Unblock()
	if err := h.a.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: podSandbox(p)}); err != nil {
		return fail("RunPodSandbox", err)
	}
	return nil
}

// StopPodSandbox tells plugins a pod whose containers are stopped is
// being stopped.
func (h *Host) StopPodSandbox(ctx context.Context, p Pod) error {
	if h == nil {
		return nil
	}
	if err := h.a.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: podSandbox(p)}); err != nil {
		return fail("StopPodSandbox", err)
	}
	return nil
}

// RemovePodSandbox tells plugins a pod is being removed.
func (h *Host) RemovePodSandbox(ctx context.Context, p Pod) error {
	if h == nil {
		return nil
	}
	if err := h.a.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: podSandbox(p)}); err != nil {
		return fail("RemovePodSandbox", err)
	}
	return nil
}

// CreateContainer asks plugins about a container about to be created and
// applies their adjustments to spec. Plugin registration waits until the
// caller calls done, which it must do once the container is recorded (or
// its creation failed), so a plugin that registers meanwhile finds it in
// its synchronisation.
func (h *Host) CreateContainer(ctx context.Context, p Pod, c Container, spec *specs.Spec) (done func(), err error) {
	if h == nil {
		return func() {}, nil
	}
	block := h.a.BlockPluginSync()
	defer func() {
		if err != nil {
			block.Unblock()
		}
	}()
	c.Spec = spec
	c.State = runtimeapi.ContainerState_CONTAINER_CREATED
	resp, err := h.a.CreateContainer(ctx, &api.CreateContainerRequest{Pod: podSandbox(p), Container: container(c)})
	if err != nil {
		return nil, fail("CreateContainer", err)
	}
	if err := adjust(spec, resp.GetAdjust(), h.opts.Rootless); err != nil {
		return nil, fail("CreateContainer", err)
	}
	h.applyUpdates(ctx, resp.GetUpdate())
	h.logEvictions(resp.GetEvict())
	h.stopMu.Lock()
	delete(h.stopped, c.ID)
	h.stopMu.Unlock()
	return block.Unblock, nil
}

// PostCreateContainer tells plugins the container exists.
func (h *Host) PostCreateContainer(ctx context.Context, p Pod, c Container) {
	if h == nil {
		return
	}
	if err := h.a.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: podSandbox(p), Container: container(c)}); err != nil {
		h.opts.Log.Warn("nri PostCreateContainer", "id", c.ID, "err", err)
	}
}

// StartContainer tells plugins a container is about to start; an error
// fails StartContainer.
func (h *Host) StartContainer(ctx context.Context, p Pod, c Container) error {
	if h == nil {
		return nil
	}
	if err := h.a.StartContainer(ctx, &api.StartContainerRequest{Pod: podSandbox(p), Container: container(c)}); err != nil {
		return fail("StartContainer", err)
	}
	return nil
}

// PostStartContainer tells plugins a container started.
func (h *Host) PostStartContainer(ctx context.Context, p Pod, c Container) {
	if h == nil {
		return
	}
	if err := h.a.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: podSandbox(p), Container: container(c)}); err != nil {
		h.opts.Log.Warn("nri PostStartContainer", "id", c.ID, "err", err)
	}
}

// UpdateContainer asks plugins about new resources for a container and
// returns the resources to apply, with their adjustments.
func (h *Host) UpdateContainer(ctx context.Context, p Pod, c Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	if h == nil {
		return r, nil
	}
	resp, err := h.a.UpdateContainer(ctx, &api.UpdateContainerRequest{
		Pod: podSandbox(p), Container: container(c), LinuxResources: apiResources(r),
	})
	if err != nil {
		return nil, fail("UpdateContainer", err)
	}
	out := r
	var others []*api.ContainerUpdate
	for _, u := range resp.GetUpdate() {
		if u.GetContainerId() == c.ID {
			out = criResources(out, u.GetLinux().GetResources())
			continue
		}
		others = append(others, u)
	}
	h.applyUpdates(ctx, others)
	h.logEvictions(resp.GetEvict())
	return out, nil
}

// PostUpdateContainer tells plugins a container's resources changed.
func (h *Host) PostUpdateContainer(ctx context.Context, p Pod, c Container) {
	if h == nil {
		return
	}
	if err := h.a.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: podSandbox(p), Container: container(c)}); err != nil {
		h.opts.Log.Warn("nri PostUpdateContainer", "id", c.ID, "err", err)
	}
}

// StopContainer tells plugins a container stopped, whether a client
// stopped it or it exited: once per container, however many times crib
// sees it stop.
func (h *Host) StopContainer(ctx context.Context, p Pod, c Container) {
	if h == nil {
		return
	}
	h.stopMu.Lock()
	defer h.stopMu.Unlock()
	if h.stopped[c.ID] {
		return
	}
	h.stopped[c.ID] = true
	resp, err := h.a.StopContainer(ctx, &api.StopContainerRequest{Pod: podSandbox(p), Container: container(c)})
	if err != nil {
		h.opts.Log.Warn("nri StopContainer", "id", c.ID, "err", err)
		return
	}
	h.applyUpdates(ctx, resp.GetUpdate())
}

// RemoveContainer tells plugins a container is removed, after its
// StopContainer event.
func (h *Host) RemoveContainer(ctx context.Context, p Pod, c Container) {
	if h == nil {
		return
	}
	h.StopContainer(ctx, p, c)
	h.stopMu.Lock()
	delete(h.stopped, c.ID)
	h.stopMu.Unlock()
	if err := h.a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: podSandbox(p), Container: container(c)}); err != nil {
		h.opts.Log.Warn("nri RemoveContainer", "id", c.ID, "err", err)
	}
}

// logEvictions reports evictions plugins asked for: crib does not evict
// on a plugin's word (the kubelet decides what runs).
func (h *Host) logEvictions(ev []*api.ContainerEviction) {
	for _, e := range ev {
		h.opts.Log.Warn("nri: a plugin asked to evict a container; crib leaves that to the kubelet",
			"id", e.GetContainerId(), "reason", e.GetReason())
	}
}
