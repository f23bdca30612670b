package cri

import (
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/nri"
)

// Condition is the state of one part crib needs, as the server measured it.
type Condition struct {
	Ready   bool
	Reason  string // CamelCase, as CRI conditions use
	Message string // what is missing, in words an operator can act on
}

// Host is what the server knows about the host and hands to the CRI layer:
// readiness of the parts, the cgroup driver, and the facts shown in verbose
// Status. Functions are called on every Status so readiness can change while
// crib runs.
type Host struct {
	RuntimeCondition func() Condition
	NetworkCondition func() Condition
	// ResourceCondition, when set, is reported as ResourceLimitsEnforced:
	// false while crib has no cgroup to confine pods with.
	ResourceCondition func() Condition
	// CgroupDriver is "systemd" or "cgroupfs".
	CgroupDriver string
	// Handlers lists the usable runtime handler names, the default first.
	Handlers []string
	// Info is merged into verbose Status info: each value must be JSON.
	Info func() map[string]string
	// UserNamespaces means pods may have their own user namespace
	// (hostUsers: false): crib's range has room and the storage driver's
	// root file systems can be idmapped.
	UserNamespaces bool
}

// Options wires a Service.
type Options struct {
	Version    string // crib's own version
	Host       Host
	Pods       PodManager
	Containers ContainerManager
	Rootfs     RootfsStore
	Spec       SpecDefaults
	// Streaming serves exec, attach and port-forward sessions; nil
	// answers those RPCs Unimplemented.
	Streaming StreamingServer
	// NRI hosts NRI plugins; nil is NRI off.
	NRI *nri.Host
	// Log receives what the service notes beside its answers (undo
	// failures, specs at debug level); nil means slog.Default().
	Log *slog.Logger
	// Work is told when background work (a removed container's reclaim)
	// begins and ends, as the daemon's memory trim is told of each call:
	// the trim after a burst of removals then comes after their reclaims,
	// not during them. nil: nobody is told.
	Work Work
}

// Work is told of background work the service does.
type Work interface {
	Begin()
	End()
}

// RuntimeService implements CRI's RuntimeService.
type RuntimeService struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	opts       Options
	pods       PodManager
	containers ContainerManager
	rootfs     RootfsStore

	podNames       *nameIndex
	containerNames *nameIndex
	events         *eventHub
	podLocks       *podLocks
	nri            *nri.Host
	hidden         hiddenPods
	log            *slog.Logger
	// reclaims deletes removed containers' files in the background.
	reclaims *reclaimer
	// podCIDR is what the kubelet last sent in UpdateRuntimeConfig.
	podCIDR atomic.Pointer[string]
}

// ImageService implements CRI's ImageService.
type ImageService struct {
	runtimeapi.UnimplementedImageServiceServer
	images ImageStore
}

// NewRuntimeService builds the RuntimeService and reserves the names of
// the pods and containers that already exist (after a restart).
func NewRuntimeService(opts Options) *RuntimeService {
	s := &RuntimeService{
		opts:           opts,
		pods:           opts.Pods,
		containers:     opts.Containers,
		rootfs:         opts.Rootfs,
		podNames:       newNameIndex(),
		containerNames: newNameIndex(),
		events:         newEventHub(),
		podLocks:       newPodLocks(),
		nri:            opts.NRI,
		log:            opts.Log,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.reclaims = newReclaimer(s.log, opts.Work)
	s.nri.Bind(s.NRIState, s.NRIUpdate) // before the server starts the host
	if s.pods != nil {
		for _, sb := range s.pods.List() {
			s.podNames.reserve(podName(sb.Config.GetMetadata()), sb.ID)
		}
	}
	if s.containers != nil {
		for _, c := range s.containers.List() {
			s.containerNames.reserve(containerName(c.SandboxID, c.Config.GetMetadata()), c.ID)
		}
		go s.relayEvents(s.containers.Events())
	}
	return s
}

// reclaimDrain bounds how long Close waits for background reclaims.
const reclaimDrain = 10 * time.Second

// Close waits for the reclaims of removed containers still running (a
// bounded while: the start-up sweep removes what is left). Call it once
// the gRPC server stopped serving.
func (s *RuntimeService) Close() {
	s.reclaims.drain(reclaimDrain)
}

// NewImageService builds the ImageService on an image store.
func NewImageService(images ImageStore) *ImageService {
	return &ImageService{images: images}
}

// Register adds both services to a gRPC server.
func Register(s *grpc.Server, rs *RuntimeService, is *ImageService) {
	runtimeapi.RegisterRuntimeServiceServer(s, rs)
	runtimeapi.RegisterImageServiceServer(s, is)
}
