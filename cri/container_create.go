package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/internal/steptrace"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/storage"
)

// CreateContainer makes a container in a ready pod: its filesystem from
// the image, its OCI spec, and the created (not started) container under
// its monitor. The steps (createSteps) run in order; when one fails, the
// ones before it are undone, newest first, and nothing of the container
// is left.
//
// Every decision about the pod (privileged, namespaces, SELinux label,
// cgroup parent, user namespace, log directory) comes from the pod crib
// recorded at RunPodSandbox. The request's sandbox_config is the client's
// word only and is ignored: trusting it let a client claim a privileged
// pod for a pod that is not.
func (s *RuntimeService) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if err := validateContainerConfig(cfg); err != nil {
		return nil, err
	}
	found, err := s.findPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	// Held until the container is recorded, so a StopPodSandbox that
	// starts meanwhile waits for it and then stops it.
	unlock := s.podLocks.shared(found.ID)
	defer unlock()
	c, err := s.admitContainer(ctx, found.ID, cfg)
	steptrace.Mark(ctx, "admit")
	if err != nil {
		return nil, err
	}
	defer c.endNRI()
	if err := s.runCreateSteps(ctx, c); err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: c.id}, nil
}

// containerCreation carries one CreateContainer through its steps: what
// the request and the pod decided, then what each step made.
type containerCreation struct {
	id, name string
	cfg      *runtimeapi.ContainerConfig
	sb       *sandbox.Sandbox
	img      storage.Image
	logPath  string

	rootfs  string                 // step rootfs
	volumes map[string]imageVolume // step image volumes
	spec    *specs.Spec            // step spec
	// nriDone ends the NRI plugins' part (step nri): called once the
	// steps are over, whatever their outcome.
	nriDone func()
}

// admitContainer checks everything that needs no undo, under the pod's
// lock: the pod is ready, may run this container, and has its image.
func (s *RuntimeService) admitContainer(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (*containerCreation, error) {
	sb, err := s.readyPod(podID)
	if err != nil {
		return nil, err
	}
	if err := checkPrivilege(cfg, sb.Config); err != nil {
		return nil, err
	}
	logPath, err := containerLogPath(sb.Config.GetLogDirectory(), cfg.GetLogPath())
	if err != nil {
		return nil, err
	}
	ref := cfg.GetImage().GetImage()
	img, err := s.rootfs.Status(ctx, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("image %s is not present (pull it first): %w", errdefs.Quote(ref), errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &containerCreation{
		id:      newID(),
		name:    containerName(sb.ID, cfg.GetMetadata()),
		cfg:     cfg,
		sb:      sb,
		img:     img,
		logPath: logPath,
	}, nil
}

// createStep is one step of CreateContainer; undo, when set, takes back
// what do made.
type createStep struct {
	name string
	do   func(context.Context, *containerCreation) error
	undo func(*containerCreation)
}

func (s *RuntimeService) createSteps() []createStep {
	return []createStep{
		{"name", s.reserveContainerName, s.releaseContainerName},
		{"rootfs", s.makeRootfs, s.dropRootfs},
		{"image volumes", s.mountImageVolumes, s.unmountImageVolumes},
		{"spec", s.generateSpec, nil},
		{"nri", s.adjustByPlugins, s.tellPluginsNotCreated},
		{"container", s.createRuntimeContainer, nil},
	}
}

// runCreateSteps runs the steps in order and, when one fails, undoes the
// ones that succeeded, newest first.
func (s *RuntimeService) runCreateSteps(ctx context.Context, c *containerCreation) (retErr error) {
	var done []createStep
	defer func() {
		if retErr == nil {
			return
		}
		for i := len(done) - 1; i >= 0; i-- {
			if done[i].undo != nil {
				done[i].undo(c)
			}
		}
	}()
	for _, st := range s.createSteps() {
		err := st.do(ctx, c)
		steptrace.Mark(ctx, st.name)
		if err != nil {
			return err
		}
		done = append(done, st)
	}
	return nil
}

func (s *RuntimeService) reserveContainerName(_ context.Context, c *containerCreation) error {
	if err := s.containerNames.reserve(c.name, c.id); err != nil {
		return fmt.Errorf("container %w", err)
	}
	return nil
}

func (s *RuntimeService) releaseContainerName(c *containerCreation) {
	s.containerNames.release(c.name)
}

func (s *RuntimeService) generateSpec(ctx context.Context, c *containerCreation) error {
	in := s.specInput(c)
	in.ImageVolumes = map[string]string{}
	for ref, v := range c.volumes {
		in.ImageVolumes[ref] = v.path
	}
	spec, err := runtime.GenerateSpec(in)
	if err != nil {
		return err
	}
	// Encoding the spec costs a CreateContainer more than generating it.
	if s.log.Enabled(ctx, slog.LevelDebug) {
		if b, err := json.Marshal(spec); err == nil {
			s.log.Debug("container spec", "id", c.id, "spec", string(b))
		}
	}
	c.spec = spec
	return nil
}

// adjustByPlugins lets NRI plugins adjust the spec before the container
// exists (cri/nri.go).
func (s *RuntimeService) adjustByPlugins(ctx context.Context, c *containerCreation) error {
	done, err := s.nriCreate(ctx, c.sb, c.id, c.cfg, c.spec)
	c.nriDone = done
	return err
}

// tellPluginsNotCreated: plugins that saw the CreateContainer learn that
// the container was not made after all.
func (s *RuntimeService) tellPluginsNotCreated(c *containerCreation) {
	s.nriCreateFailed(context.Background(), c.sb, c.id, c.cfg)
}

func (c *containerCreation) endNRI() {
	if c.nriDone != nil {
		c.nriDone()
	}
}

// createRuntimeContainer is the last step: the container exists under its
// monitor and is recorded, so there is nothing after it to fail.
func (s *RuntimeService) createRuntimeContainer(ctx context.Context, c *containerCreation) error {
	podCfg := c.sb.Config
	id := c.id
	created, err := s.containers.Create(ctx, runtime.CreateOptions{
		ID:            id,
		SandboxID:     c.sb.ID,
		Name:          c.name,
		Config:        c.cfg,
		SandboxConfig: podCfg,
		Spec:          c.spec,
		LogPath:       c.logPath,
		LogDirectory:  podCfg.GetLogDirectory(),
		Handler:       c.sb.RuntimeHandler,
		ImageRef:      c.cfg.GetImage().GetImage(),
		ImageID:       c.img.ID,
		StopSignal:    imageStopSignal(c.img),
		ImageVolumes:  imageVolumeIDs(c.volumes),
	})
	if err != nil {
		return err
	}
	s.nri.PostCreateContainer(ctx, nriPod(c.sb), nriContainer(created))
	return nil
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

// makeRootfs creates the container's writable layer on its image and
// mounts it. In a pod's own user namespace the layer is a copy owned by
// the pod's root.
func (s *RuntimeService) makeRootfs(ctx context.Context, c *containerCreation) error {
	var err error
	if sb := c.sb; sb.UserNSPath != "" {
		_, err = s.rootfs.CreateMappedContainer(ctx, c.id, c.name, c.img.ID, sb.MountLabel, sb.ID, sb.UIDMap, sb.GIDMap)
	} else {
		_, err = s.rootfs.CreateContainer(ctx, c.id, c.name, c.img.ID, sb.MountLabel, sb.ID)
	}
	steptrace.Mark(ctx, "rootfs layer")
	if err != nil {
		return err
	}
	path, err := s.rootfs.Mount(c.id)
	if err != nil {
		s.rootfs.DeleteContainer(c.id)
		return err
	}
	c.rootfs = path
	return nil
}

func (s *RuntimeService) dropRootfs(c *containerCreation) {
	s.rootfs.Unmount(c.id)
	s.rootfs.DeleteContainer(c.id)
}

func (s *RuntimeService) specInput(c *containerCreation) runtime.SpecInput {
	id, sb, podCfg, cfg := c.id, c.sb, c.sb.Config, c.cfg
	nsOpts := podCfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	in := runtime.SpecInput{
		ID:         id,
		SandboxID:  sb.ID,
		Config:     cfg,
		Sandbox:    podCfg,
		Image:      c.img.Config,
		RootfsPath: c.rootfs,
		Namespaces: runtime.PodNamespaces{
			Network: runtime.NamespacePath{Path: sb.NetNSPath, Host: nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE},
			IPC:     runtime.NamespacePath{Path: sb.IPCNSPath, Host: nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE},
			UTS:     runtime.NamespacePath{Path: sb.UTSNSPath, Host: nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE},
			PID:     sb.PIDNSPath,
			User:    sb.UserNSPath,
			UIDMap:  specIDMap(sb.UIDMap),
			GIDMap:  specIDMap(sb.GIDMap),
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

// specIDMap is a pod's user-namespace mapping (crib's ids) as the OCI
// spec spells it.
func specIDMap(in []idmap.Mapping) []specs.LinuxIDMapping {
	var out []specs.LinuxIDMapping
	for _, m := range in {
		out = append(out, specs.LinuxIDMapping{ContainerID: uint32(m.ContainerID), HostID: uint32(m.HostID), Size: uint32(m.Count)})
	}
	return out
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
func (s *RuntimeService) mountImageVolumes(ctx context.Context, c *containerCreation) error {
	c.volumes = map[string]imageVolume{}
	for _, m := range c.cfg.GetMounts() {
		ref := m.GetImage().GetImage()
		if ref == "" {
			continue
		}
		if _, done := c.volumes[ref]; done {
			continue
		}
		if !m.GetReadonly() {
			s.unmountImageVolumes(c)
			return fmt.Errorf("image volume %q at %q must be read-only: %w", ref, m.GetContainerPath(), errdefs.ErrInvalidArgument)
		}
		path, id, err := s.rootfs.MountImage(ctx, ref)
		if err != nil {
			s.unmountImageVolumes(c)
			return fmt.Errorf("image volume %q: %w", ref, err)
		}
		c.volumes[ref] = imageVolume{path: path, imageID: id}
	}
	return nil
}

func (s *RuntimeService) unmountImageVolumes(c *containerCreation) {
	for _, iv := range c.volumes {
		s.rootfs.UnmountImage(iv.imageID)
	}
	c.volumes = nil
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
