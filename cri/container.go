package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/steptrace"
	"github.com/crib-dev/crib/runtime"
)

// StartContainer starts a created container.
func (s *RuntimeService) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	// Shared with creates, exclusive with the pod's stop and remove: a
	// start either finishes before the pod stops (and the stop kills it)
	// or sees the pod stopped and refuses.
	unlock := s.podLocks.shared(c.SandboxID)
	defer unlock()
	if _, err := s.readyPod(c.SandboxID); err != nil {
		return nil, err
	}
	if c, err = s.containers.Get(c.ID); err != nil {
		return nil, err
	}
	pod := s.nriPodOf(c.SandboxID)
	if err := s.nri.StartContainer(ctx, pod, nriContainer(c)); err != nil {
		return nil, err
	}
	steptrace.Mark(ctx, "admit")
	if err := s.containers.Start(ctx, c.ID); err != nil {
		return nil, err
	}
	steptrace.Mark(ctx, "start")
	if started, err := s.containers.Get(c.ID); err == nil {
		s.nri.PostStartContainer(ctx, pod, nriContainer(started))
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer stops a container with its stop signal, then SIGKILL after
// the timeout. Stopping a stopped or unknown container succeeds.
func (s *RuntimeService) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	c, err := s.findContainer(req.GetContainerId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.StopContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	timeout := time.Duration(req.GetTimeout()) * time.Second
	if err := s.containers.Stop(ctx, c.ID, timeout); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	s.nriStopped(ctx, c.ID)
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer removes a container, stopping it first. Removing an
// unknown container succeeds.
func (s *RuntimeService) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	c, err := s.findContainer(req.GetContainerId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.RemoveContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	// Shared, as creates and starts: a remove does not interleave with the
	// pod's stop or remove, which list and act on the same containers.
	unlock := s.podLocks.shared(c.SandboxID)
	defer unlock()
	if err := s.removeContainer(ctx, c.ID); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// removeContainer stops and removes a container and frees its name; its
// files and root filesystem are left to the reclaimer (reclaim.go).
func (s *RuntimeService) removeContainer(ctx context.Context, id string) error {
	c, err := s.containers.Get(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	// Release stops it too; stopping here first keeps NRI's order (stopped,
	// then removed) for a container that still runs.
	if c.State != runtime.StateExited {
		if err := s.containers.Stop(ctx, id, 0); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
	}
	s.nriStopped(ctx, id)
	// The image store's name and crib's record go side by side: each is a
	// file write.
	named := make(chan error, 1)
	go func() { named <- s.rootfs.ReleaseName(id) }()
	reclaim, err := s.containers.Release(ctx, id)
	nameErr := <-named
	steptrace.Mark(ctx, "release")
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err // still known; crib's name index keeps its name
	}
	if reclaim == nil {
		return nil // removed meanwhile by another call, which reclaims it
	}
	s.nri.RemoveContainer(ctx, s.nriPodOf(c.SandboxID), nriContainer(c))
	s.containerNames.release(containerName(c.SandboxID, c.Config.GetMetadata()))
	run := s.reclaimContainer(c, reclaim)
	if nameErr == nil {
		s.reclaims.add(c.SandboxID, id, run)
		return nil
	}
	// The store kept the name: deleting the filesystem now frees it too.
	if err := run(ctx); err != nil {
		s.reclaims.add(c.SandboxID, id, run) // for the pod's removal to retry
		return errors.Join(nameErr, err)
	}
	return nil
}

// reclaimContainer deletes what a released container left: the runtime's
// state and bundle, then its root filesystem and image-volume mounts. A
// reclaim that failed can be run again; it resumes where it stopped, so an
// image mount is never released twice.
func (s *RuntimeService) reclaimContainer(c *runtime.Container, runtimeFiles func(context.Context) error) func(context.Context) error {
	var filesDone, rootfsDone bool
	var images []string
	for _, imageID := range c.ImageVolumes {
		images = append(images, imageID)
	}
	return func(ctx context.Context) error {
		if !filesDone {
			if err := runtimeFiles(ctx); err != nil {
				return err
			}
			filesDone = true
		}
		if !rootfsDone {
			if err := s.rootfs.DeleteContainer(c.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				return err
			}
			rootfsDone = true
		}
		for len(images) > 0 {
			if err := s.rootfs.UnmountImage(images[0]); err != nil {
				return err
			}
			images = images[1:]
		}
		return nil
	}
}

// ContainerStatus reports one container.
func (s *RuntimeService) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if fresh, err := s.containers.Status(c.ID); err == nil {
		c = fresh
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: containerStatus(c)}
	if req.GetVerbose() {
		info, _ := json.Marshal(c)
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func containerStatus(c *runtime.Container) *runtimeapi.ContainerStatus {
	cfg := c.Config
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    cfg.GetMetadata(),
		State:       c.State.CRI(),
		CreatedAt:   c.CreatedAt.UnixNano(),
		Image:       &runtimeapi.ImageSpec{Image: c.ImageRef},
		ImageRef:    c.ImageID,
		ImageId:     c.ImageID,
		Labels:      c.Labels,
		Annotations: c.Annotations,
		LogPath:     c.LogPath,
		ExitCode:    c.ExitCode,
		Reason:      c.Reason,
		Message:     c.Message,
	}
	if !c.Unconfined {
		// An unconfined container has no limits applied: report none
		// rather than the ones it asked for.
		st.Resources = &runtimeapi.ContainerResources{Linux: cfg.GetLinux().GetResources()}
	}
	if !c.StartedAt.IsZero() {
		st.StartedAt = c.StartedAt.UnixNano()
	}
	if !c.FinishedAt.IsZero() {
		st.FinishedAt = c.FinishedAt.UnixNano()
	}
	for _, m := range cfg.GetMounts() {
		if ref := m.GetImage().GetImage(); ref != "" {
			// Report the image volume's resolved image (KEP-5365).
			m = proto.Clone(m).(*runtimeapi.Mount)
			m.Image.ImageRef = c.ImageVolumes[ref]
		}
		st.Mounts = append(st.Mounts, m)
	}
	if u := c.User; u != nil {
		st.User = &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid:                u.UID,
			Gid:                u.GID,
			SupplementalGroups: u.SupplementalGroups,
		}}
	}
	return st
}

// ListContainers lists containers, filtered by id (or prefix), pod,
// state and labels.
func (s *RuntimeService) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f := req.GetFilter()
	resp := &runtimeapi.ListContainersResponse{}
	for _, c := range s.containers.List() {
		if !containerMatches(c, f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != c.State.CRI() {
			continue
		}
		resp.Containers = append(resp.Containers, &runtimeapi.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     c.Config.GetMetadata(),
			Image:        &runtimeapi.ImageSpec{Image: c.ImageRef},
			ImageRef:     c.ImageID,
			ImageId:      c.ImageID,
			State:        c.State.CRI(),
			CreatedAt:    c.CreatedAt.UnixNano(),
			Labels:       c.Labels,
			Annotations:  c.Annotations,
		})
	}
	return resp, nil
}

func containerMatches(c *runtime.Container, id, podID string, labels map[string]string) bool {
	if id != "" && !strings.HasPrefix(c.ID, id) {
		return false
	}
	if podID != "" && !strings.HasPrefix(c.SandboxID, podID) {
		return false
	}
	return labelsMatch(c.Labels, labels)
}

// ContainerStats reports one container's usage.
func (s *RuntimeService) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.containers.Stats(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the usage of the containers the filter
// selects.
func (s *RuntimeService) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	f := req.GetFilter()
	resp := &runtimeapi.ListContainerStatsResponse{}
	for _, c := range s.containers.List() {
		if !containerMatches(c, f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector()) {
			continue
		}
		st, err := s.containers.Stats(ctx, c.ID)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

// UpdateContainerResources changes a container's resource limits.
func (s *RuntimeService) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	c, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	pod := s.nriPodOf(c.SandboxID)
	res, err := s.nri.UpdateContainer(ctx, pod, nriContainer(c), req.GetLinux())
	if err != nil {
		return nil, err
	}
	if err := s.containers.Update(ctx, c.ID, res); err != nil {
		return nil, err
	}
	s.nri.PostUpdateContainer(ctx, pod, nriContainer(c))
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// ReopenContainerLog makes the monitor reopen the log after rotation.
func (s *RuntimeService) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	c, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.containers.ReopenLog(ctx, c.ID); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

// ExecSync runs a command in a running container and returns its output.
func (s *RuntimeService) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if err := validateCmd(req.GetCmd()); err != nil {
		return nil, err
	}
	c, err := s.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	res, err := s.containers.ExecSync(ctx, c.ID, req.GetCmd(), time.Duration(req.GetTimeout())*time.Second)
	if err != nil {
		return nil, err
	}
	if res.TimedOut {
		return nil, fmt.Errorf("command %q timed out after %ds: %w", strings.Join(req.GetCmd(), " "), req.GetTimeout(), context.DeadlineExceeded)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

// findContainer resolves an id or a unique id prefix, as crictl lets
// operators type short ids.
func (s *RuntimeService) findContainer(id string) (*runtime.Container, error) {
	if id == "" {
		return nil, invalid("container id is empty")
	}
	return s.containers.Resolve(id)
}

func (s *RuntimeService) podContainers(podID string) []*runtime.Container {
	var out []*runtime.Container
	for _, c := range s.containers.List() {
		if c.SandboxID == podID {
			out = append(out, c)
		}
	}
	return out
}
