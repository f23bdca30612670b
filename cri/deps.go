package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/storage"
)

// The interfaces below are what the CRI layer needs from the packages
// under it; the server wires the real ones, tests may wire others.

// PodManager is package sandbox's Manager.
type PodManager interface {
	Create(ctx context.Context, id string, cfg *runtimeapi.PodSandboxConfig, handler string) (*sandbox.Sandbox, error)
	Stop(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	Get(id string) (*sandbox.Sandbox, error)
	// Resolve finds a pod by its id or a unique prefix of it.
	Resolve(idOrPrefix string) (*sandbox.Sandbox, error)
	List() []*sandbox.Sandbox
	Stats(ctx context.Context, id string) (*runtimeapi.PodSandboxStats, error)
	// NetworkCounters reads the pod's interface counters for the metrics.
	NetworkCounters(ctx context.Context, id string) ([]sandbox.InterfaceCounters, error)
	NetworkReady() (bool, string)
}

// ContainerManager is package runtime's Manager.
type ContainerManager interface {
	Create(ctx context.Context, o runtime.CreateOptions) (*runtime.Container, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Remove(ctx context.Context, id string) error
	// Release is Remove without its reclaim, which it returns (reclaim.go).
	Release(ctx context.Context, id string) (reclaim func(context.Context) error, err error)
	Get(id string) (*runtime.Container, error)
	// Resolve finds a container by its id or a unique prefix of it.
	Resolve(idOrPrefix string) (*runtime.Container, error)
	Status(id string) (*runtime.Container, error)
	List() []*runtime.Container
	Update(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error
	ReopenLog(ctx context.Context, id string) error
	Stats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error)
	// Metrics measures a container in detail for the CRI metrics,
	// without moving Stats' CPU-rate window.
	Metrics(ctx context.Context, id string) (runtime.Metrics, error)
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (runtime.ExecResult, error)
	// Events delivers life-cycle changes; cri is its only reader.
	Events() <-chan runtime.Event
}

// RootfsStore is the container-filesystem half of package storage.
type RootfsStore interface {
	Status(ctx context.Context, ref string) (storage.Image, error)
	CreateContainer(ctx context.Context, id, name, imageRef, mountLabel, metadata string) (storage.ContainerFS, error)
	// CreateMappedContainer is CreateContainer with the image's files
	// shown owned by a pod user namespace's ids.
	CreateMappedContainer(ctx context.Context, id, name, imageRef, mountLabel, metadata string, uidMap, gidMap []idmap.Mapping) (storage.ContainerFS, error)
	Mount(id string) (string, error)
	Unmount(id string) error
	DeleteContainer(id string) error
	// ReleaseName frees the container's name before its filesystem is
	// deleted (reclaim.go).
	ReleaseName(id string) error
	ContainerUsage(ctx context.Context, id string) (bytes, inodes uint64, err error)
	MountImage(ctx context.Context, ref string) (path, imageID string, err error)
	UnmountImage(imageID string) error
}

// SpecDefaults is what spec generation needs from the host, measured once
// by the server.
type SpecDefaults struct {
	Host               runtime.HostInfo
	Rootless           bool
	SeccompProfileRoot string
	// ContainerCgroup maps a pod cgroup and a container id to the
	// container's cgroupsPath ("" when pods run unconfined).
	ContainerCgroup func(podCgroup, containerID string) string
}

// StreamingServer hands out the URLs of exec, attach and port-forward
// sessions (k8s.io/cri-streaming's Server); the server package runs it.
type StreamingServer interface {
	GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}
