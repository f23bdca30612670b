package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/storage"
)

// CreateContainer makes a container in a ready pod: its filesystem from
// the image, its OCI spec, and the created (not started) container under
// its monitor. Every step is undone if a later one fails.
//
// Every decision about the pod (privileged, namespaces, SELinux label,
// cgroup parent, user namespace, log directory) comes from the pod crib
// recorded at RunPodSandbox. The request's sandbox_config is the client's
// word only and is ignored: trusting it let a client claim a privileged
// pod for a pod that is not.
func (s *RuntimeService) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (_ *runtimeapi.CreateContainerResponse, retErr error) {
	cfg := req.GetConfig()
	if err := validateContainerConfig(cfg); err != nil {
		return nil, err
	}
	if req.GetPodSandboxId() == "" {
		return nil, invalid("pod sandbox id is empty")
	}
	found, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, toStatus(err)
	}
	// Held until the container is recorded, so a StopPodSandbox that
	// starts meanwhile waits for it and then stops it.
	unlock := s.podLocks.shared(found.ID)
	defer unlock()
	sb, err := s.readyPod(found.ID)
	if err != nil {
		return nil, toStatus(err)
	}
	podCfg := sb.Config
	if err := checkPrivilege(cfg, podCfg); err != nil {
		return nil, toStatus(err)
	}
	img, err := s.rootfs.Status(ctx, cfg.GetImage().GetImage())
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, toStatus(fmt.Errorf("image %q is not present (pull it first): %w", cfg.GetImage().GetImage(), errdefs.ErrNotFound))
	}
	if err != nil {
		return nil, toStatus(err)
	}

	id := newID()
	name := containerName(sb.ID, cfg.GetMetadata())
	if err := s.containerNames.reserve(name, id); err != nil {
		return nil, toStatus(fmt.Errorf("container %w", err))
	}
	defer func() {
		if retErr != nil {
			s.containerNames.release(name)
		}
	}()

	rootfs, err := s.makeRootfs(ctx, id, name, img, sb)
	if err != nil {
		return nil, toStatus(err)
	}
	defer func() {
		if retErr != nil {
			s.dropRootfs(id)
		}
	}()

	volumes, err := s.mountImageVolumes(ctx, cfg)
	if err != nil {
		return nil, toStatus(err)
	}
	defer func() {
		if retErr != nil {
			s.unmountImageVolumes(volumes)
		}
	}()

	in := s.specInput(id, sb, podCfg, cfg, img, rootfs)
	in.ImageVolumes = map[string]string{}
	for ref, v := range volumes {
		in.ImageVolumes[ref] = v.path
	}
	spec, err := runtime.GenerateSpec(in)
	if err != nil {
		return nil, toStatus(err)
	}
	if b, err := json.Marshal(spec); err == nil {
		slog.Debug("container spec", "id", id, "spec", string(b))
	}
	logPath, err := containerLogPath(podCfg.GetLogDirectory(), cfg.GetLogPath())
	if err != nil {
		return nil, err
	}
	nriDone, err := s.nriCreate(ctx, sb, id, cfg, spec)
	if err != nil {
		return nil, toStatus(err)
	}
	defer nriDone()
	c, err := s.containers.Create(ctx, runtime.CreateOptions{
		ID:            id,
		SandboxID:     sb.ID,
		Name:          name,
		Config:        cfg,
		SandboxConfig: podCfg,
		Spec:          spec,
		LogPath:       logPath,
		LogDirectory:  podCfg.GetLogDirectory(),
		Handler:       sb.RuntimeHandler,
		ImageRef:      cfg.GetImage().GetImage(),
		ImageID:       img.ID,
		StopSignal:    imageStopSignal(img),
		ImageVolumes:  imageVolumeIDs(volumes),
		RootfsUsage: func() (uint64, uint64, error) {
			return s.rootfs.ContainerUsage(context.Background(), id)
		},
	})
	if err != nil {
		s.nriCreateFailed(ctx, sb, id, cfg)
		return nil, toStatus(err)
	}
	s.nri.PostCreateContainer(ctx, nriPod(sb), nriContainer(c))
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

// readyPod reads the pod's record again under its lock: a pod stopped or
// removed since the caller looked it up accepts no new work.
func (s *RuntimeService) readyPod(id string) (*sandbox.Sandbox, error) {
	sb, err := s.pods.Get(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("pod sandbox %s was removed: %w", id, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, err
	}
	if sb.State != sandbox.StateReady {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", id, errdefs.ErrFailedPrecondition)
	}
	return sb, nil
}

// checkPrivilege refuses a privileged container in a pod that was not
// created privileged, before any filesystem is made for it.
func checkPrivilege(cfg *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig) error {
	if cfg.GetLinux().GetSecurityContext().GetPrivileged() && !pod.GetLinux().GetSecurityContext().GetPrivileged() {
		return fmt.Errorf("container %s is privileged but its pod was not created privileged: %w",
			errdefs.Quote(cfg.GetMetadata().GetName()), errdefs.ErrInvalidArgument)
	}
	return nil
}

func (s *RuntimeService) makeRootfs(ctx context.Context, id, name string, img storage.Image, sb *sandbox.Sandbox) (string, error) {
	if _, err := s.rootfs.CreateContainer(ctx, id, name, img.ID, sb.MountLabel, sb.ID); err != nil {
		return "", err
	}
	path, err := s.rootfs.Mount(id)
	if err != nil {
		s.rootfs.DeleteContainer(id)
		return "", err
	}
	return path, nil
}

func (s *RuntimeService) dropRootfs(id string) {
	s.rootfs.Unmount(id)
	s.rootfs.DeleteContainer(id)
}

func (s *RuntimeService) specInput(id string, sb *sandbox.Sandbox, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig, img storage.Image, rootfs string) runtime.SpecInput {
	nsOpts := podCfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	in := runtime.SpecInput{
		ID:         id,
		SandboxID:  sb.ID,
		Config:     cfg,
		Sandbox:    podCfg,
		Image:      img.Config,
		RootfsPath: rootfs,
		Namespaces: runtime.PodNamespaces{
			Network: runtime.NamespacePath{Path: sb.NetNSPath, Host: nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE},
			IPC:     runtime.NamespacePath{Path: sb.IPCNSPath, Host: nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE},
			UTS:     runtime.NamespacePath{Path: sb.UTSNSPath, Host: nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE},
			PID:     sb.PIDNSPath,
		},
		PodFiles: runtime.PodFiles{
			Hosts:      sb.HostsPath,
			ResolvConf: sb.ResolvPath,
			Hostname:   sb.HostnamePath,
			Shm:        sb.ShmPath,
		},
		Rootless:           s.opts.Spec.Rootless,
		Host:               s.opts.Spec.Host,
		SeccompProfileRoot: s.opts.Spec.SeccompProfileRoot,
		ProcessLabel:       sb.ProcessLabel,
		MountLabel:         sb.MountLabel,
	}
	if target := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetTargetId(); target != "" {
		if tc, err := s.containers.Get(target); err == nil && tc.Pid > 0 {
			in.Namespaces.TargetPID = fmt.Sprintf("/proc/%d/ns/pid", tc.Pid)
		}
	}
	if sb.CgroupParent != "" && s.opts.Spec.ContainerCgroup != nil {
		in.CgroupsPath = s.opts.Spec.ContainerCgroup(sb.CgroupParent, id)
	}
	return in
}

// containerLogPath joins the pod's log directory and the container's log
// path, refusing a path that would leave the directory.
func containerLogPath(dir, rel string) (string, error) {
	if dir == "" || rel == "" {
		return "", nil
	}
	if filepath.IsAbs(rel) {
		return "", invalid("container log path %q must be relative to the pod's log directory", rel)
	}
	full := filepath.Join(dir, rel)
	if !strings.HasPrefix(full, filepath.Clean(dir)+string(filepath.Separator)) {
		return "", invalid("container log path %q leaves the pod's log directory %q", rel, dir)
	}
	return full, nil
}

func imageStopSignal(img storage.Image) string {
	if img.Config == nil {
		return ""
	}
	return img.Config.Config.StopSignal
}

type imageVolume struct{ path, imageID string }

// mountImageVolumes mounts, read-only, each image a Mount names, once per
// reference; a failure unmounts what was mounted.
func (s *RuntimeService) mountImageVolumes(ctx context.Context, cfg *runtimeapi.ContainerConfig) (map[string]imageVolume, error) {
	out := map[string]imageVolume{}
	for _, m := range cfg.GetMounts() {
		ref := m.GetImage().GetImage()
		if ref == "" {
			continue
		}
		if _, done := out[ref]; done {
			continue
		}
		if !m.GetReadonly() {
			s.unmountImageVolumes(out)
			return nil, fmt.Errorf("image volume %q at %q must be read-only: %w", ref, m.GetContainerPath(), errdefs.ErrInvalidArgument)
		}
		path, id, err := s.rootfs.MountImage(ctx, ref)
		if err != nil {
			s.unmountImageVolumes(out)
			return nil, fmt.Errorf("image volume %q: %w", ref, err)
		}
		out[ref] = imageVolume{path: path, imageID: id}
	}
	return out, nil
}

func (s *RuntimeService) unmountImageVolumes(v map[string]imageVolume) {
	for _, iv := range v {
		s.rootfs.UnmountImage(iv.imageID)
	}
}

func imageVolumeIDs(v map[string]imageVolume) map[string]string {
	if len(v) == 0 {
		return nil
	}
	out := map[string]string{}
	for ref, iv := range v {
		out[ref] = iv.imageID
	}
	return out
}
