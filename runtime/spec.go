package runtime

import (
	"fmt"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// SpecInput is everything GenerateSpec needs to build one container's OCI
// spec. The caller fills it: the CRI request, the image config, the mounted
// rootfs, and the facts about the pod and the host it already knows.
type SpecInput struct {
	// ID is the container id; SandboxID the id of its pod.
	ID        string
	SandboxID string
	Config    *runtimeapi.ContainerConfig
	Sandbox   *runtimeapi.PodSandboxConfig
	// Image is the image's config (Entrypoint, Cmd, Env, WorkingDir, User).
	// nil means an empty config. Image VOLUMEs are not mounted: in
	// Kubernetes their content stays in the container's writable layer.
	Image *imgspec.Image
	// RootfsPath is the mounted rootfs. Its /etc/passwd and /etc/group
	// resolve user and group names.
	RootfsPath string
	Namespaces PodNamespaces
	PodFiles   PodFiles
	// CgroupsPath is the container's cgroup; "" means none (rootless without
	// a delegated cgroup): the spec then carries no resource limits at all,
	// because runc refuses limits it cannot apply.
	CgroupsPath string
	// Rootless means crib runs as fake root inside a user namespace: no
	// mknod, no mounting of namespaces it does not own.
	Rootless bool
	Host     HostInfo
	// SeccompProfileRoot resolves localhost seccomp profiles given as
	// relative paths.
	SeccompProfileRoot string
	// ImageVolumes maps the image reference of a CRI Mount.image to the host
	// path where the caller mounted that image read-only.
	ImageVolumes map[string]string
	// ProcessLabel and MountLabel are the pod's SELinux labels; ignored
	// unless Host.SELinuxEnabled.
	ProcessLabel string
	MountLabel   string
}

// PodNamespaces locates the namespaces the container joins. The mount
// namespace is always the container's own.
type PodNamespaces struct {
	Network NamespacePath
	IPC     NamespacePath
	UTS     NamespacePath
	// PID is the pod's shared PID namespace ("" when the pod has none),
	// joined when the container's PID mode is POD. Mode CONTAINER gets a
	// new one, NODE none: the mode comes from the container's config.
	PID string
	// TargetPID is the PID namespace of the container named by the
	// NamespaceOption target_id, joined when the PID mode is TARGET.
	TargetPID string
	// User is the pod's own user namespace (hostUsers: false), "" when
	// the pod runs in crib's; UIDMap and GIDMap are its mapping in crib's
	// ids, which runc needs even when it joins the namespace by path.
	User           string
	UIDMap, GIDMap []specs.LinuxIDMapping
}

// NamespacePath is one pod namespace: a pinned file to join, or the node's.
type NamespacePath struct {
	Path string
	// Host means the pod uses the node's namespace (NamespaceMode NODE):
	// the spec leaves the namespace out.
	Host bool
}

// PodFiles are host paths the sandbox prepared for the pod. An empty path
// is not mounted (an empty Shm gets a private tmpfs, or the host's /dev/shm
// when the pod shares the host IPC namespace).
type PodFiles struct {
	Hosts      string // → /etc/hosts
	ResolvConf string // → /etc/resolv.conf
	Hostname   string // → /etc/hostname
	Shm        string // → /dev/shm
}

// HostInfo is what spec generation must know about the host; ProbeHost
// fills it from the running system and tests inject their own.
type HostInfo struct {
	// BoundingCaps are the capabilities crib itself may hold (CAP_ names).
	// A privileged container gets exactly these; no container gets more.
	BoundingCaps []string
	// MinOOMScoreAdj is crib's current oom_score_adj: requests below it are
	// raised to it, because lowering it needs CAP_SYS_RESOURCE.
	MinOOMScoreAdj  int
	SeccompEnabled  bool
	AppArmorEnabled bool
	SELinuxEnabled  bool
	// HugepageSizes are the page sizes the host supports, as "2MB", "1GB".
	HugepageSizes []string
	// Devices are the host's device nodes, given to privileged containers.
	Devices []specs.LinuxDevice
	// CgroupV2 means the unified hierarchy; SwapControl that swap limits
	// can be enforced.
	CgroupV2    bool
	SwapControl bool
	// RecursiveReadOnly means both the kernel (≥ 5.12) and the OCI runtime
	// understand the "rro" mount option (runc 1.1 does not).
	RecursiveReadOnly bool
}

// GenerateSpec builds the OCI runtime spec of one container.
// Errors a client caused wrap errdefs.ErrInvalidArgument (or
// ErrUnimplemented for features crib lacks).
func GenerateSpec(in SpecInput) (*specs.Spec, error) {
	return generateSpec(in, systemProbes())
}

// hostProbes are the reads of host state spec generation makes beyond its
// input; tests replace them so goldens do not depend on the machine.
type hostProbes struct {
	// mounts lists the mount table of crib's mount namespace.
	mounts func() ([]mountEntry, error)
	// device describes the device node at a host path.
	device func(path string) (specs.LinuxDevice, error)
	// appArmorLoaded reports whether a profile is loaded in the kernel.
	appArmorLoaded func(profile string) (bool, error)
	// relabel gives a host path the pod's SELinux mount label.
	relabel func(path, label string) error
	// exists reports whether a host path exists.
	exists func(path string) bool
}

// mountEntry is the part of a /proc/self/mountinfo line spec generation
// needs: where something is mounted and its propagation fields.
type mountEntry struct {
	Mountpoint string
	Optional   string
}

// specBuilder carries one generation; each step fills part of spec.
type specBuilder struct {
	in     SpecInput
	probes hostProbes
	sc     *runtimeapi.LinuxContainerSecurityContext
	spec   *specs.Spec
}

func generateSpec(in SpecInput, probes hostProbes) (*specs.Spec, error) {
	if err := checkInput(in); err != nil {
		return nil, err
	}
	b := &specBuilder{
		in:     in,
		probes: probes,
		sc:     in.Config.GetLinux().GetSecurityContext(),
		spec:   emptySpec(in),
	}
	// Order matters: seccomp's default profile depends on the capabilities,
	// and mounts depend on the namespaces chosen.
	steps := []func() error{
		b.checkPrivileged,
		b.setProcess,
		b.setUser,
		b.setNamespaces,
		b.setSysctls,
		b.setCapabilities,
		b.setLSM,
		b.setSeccomp,
		b.setMaskedPaths,
		b.setMounts,
		b.setDevices,
		b.setResources,
		b.setAnnotations,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("container %s: %w", in.ID, err)
		}
	}
	return b.spec, nil
}

func checkInput(in SpecInput) error {
	switch {
	case in.ID == "":
		return fmt.Errorf("%w: container id is empty", errdefs.ErrInvalidArgument)
	case in.Config == nil:
		return fmt.Errorf("%w: container %s: no container config", errdefs.ErrInvalidArgument, in.ID)
	case in.Sandbox == nil:
		return fmt.Errorf("%w: container %s: no pod sandbox config", errdefs.ErrInvalidArgument, in.ID)
	case in.RootfsPath == "":
		return fmt.Errorf("%w: container %s: no rootfs", errdefs.ErrInvalidArgument, in.ID)
	case len(in.Host.BoundingCaps) == 0:
		// A caller bug, not a client's: without it privileged containers
		// would silently get no capabilities.
		return fmt.Errorf("container %s: HostInfo.BoundingCaps is empty", in.ID)
	}
	return nil
}

func emptySpec(in SpecInput) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Root: &specs.Root{
			Path:     in.RootfsPath,
			Readonly: in.Config.GetLinux().GetSecurityContext().GetReadonlyRootfs(),
		},
		Process: &specs.Process{},
		Linux:   &specs.Linux{CgroupsPath: in.CgroupsPath},
	}
}

// privileged reports whether the container asked for privileged mode.
func (b *specBuilder) privileged() bool { return b.sc.GetPrivileged() }

// checkPrivileged enforces the CRI rule that only a pod declared
// privileged may run privileged containers.
func (b *specBuilder) checkPrivileged() error {
	if b.privileged() && !b.in.Sandbox.GetLinux().GetSecurityContext().GetPrivileged() {
		return fmt.Errorf("%w: privileged container in a pod that is not privileged", errdefs.ErrInvalidArgument)
	}
	return nil
}
