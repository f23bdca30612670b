package cri

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idindex"
	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
	"github.com/crib-dev/crib/storage"
)

// In-memory stand-ins for the managers under cri. They keep records and
// states only: what the tests using them check is the CRI layer's own
// work (validation, which pod config decides, locking, status codes). The
// real managers are tested in their packages and, end to end, by the
// integration tests in package server. Methods not listed panic.

type fakePods struct {
	PodManager
	mu   sync.Mutex
	pods map[string]*sandbox.Sandbox
	ids  idindex.Index
}

func (f *fakePods) add(sb *sandbox.Sandbox) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[sb.ID] = sb
	f.ids.Add(sb.ID)
}

func (f *fakePods) Resolve(prefix string) (*sandbox.Sandbox, error) {
	f.mu.Lock()
	id, err := f.ids.Resolve(prefix)
	f.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("pod sandbox %w", err)
	}
	return f.Get(id)
}

func (f *fakePods) Create(_ context.Context, id string, cfg *runtimeapi.PodSandboxConfig, handler string) (*sandbox.Sandbox, error) {
	sb := &sandbox.Sandbox{ID: id, Config: cfg, State: sandbox.StateReady, RuntimeHandler: handler}
	f.add(sb)
	c := *sb
	return &c, nil
}

func (f *fakePods) Get(id string) (*sandbox.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.pods[id]
	if !ok {
		return nil, fmt.Errorf("pod %s: %w", id, errdefs.ErrNotFound)
	}
	c := *sb
	return &c, nil
}

func (f *fakePods) List() []*sandbox.Sandbox {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*sandbox.Sandbox
	for _, sb := range f.pods {
		c := *sb
		out = append(out, &c)
	}
	return out
}

func (f *fakePods) Stop(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sb, ok := f.pods[id]; ok {
		sb.State = sandbox.StateNotReady
	}
	return nil
}

func (f *fakePods) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, id)
	f.ids.Remove(id)
	return nil
}

type fakeContainers struct {
	ContainerManager
	faults
	mu      sync.Mutex
	ctrs    map[string]*runtime.Container
	ids     idindex.Index
	created []runtime.CreateOptions
	calls   []string // "Stop id", "Remove id": the order a test may check
	// pause, when set, is called inside Create and Start before the
	// container changes: a test holds a call there to race it.
	pause func(op string)
}

func (f *fakeContainers) hold(op string) {
	if f.pause != nil {
		f.pause(op)
	}
}

func (f *fakeContainers) Create(_ context.Context, o runtime.CreateOptions) (*runtime.Container, error) {
	f.hold("create")
	if err := f.check("Create"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &runtime.Container{ID: o.ID, SandboxID: o.SandboxID, Name: o.Name, Config: o.Config, State: runtime.StateCreated,
		CreatedAt: time.Now(), ImageVolumes: o.ImageVolumes}
	f.ctrs[o.ID] = c
	f.ids.Add(o.ID)
	f.created = append(f.created, o)
	cc := *c
	return &cc, nil
}

func (f *fakeContainers) set(id string, st runtime.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	c.State = st
	return nil
}

func (f *fakeContainers) Start(_ context.Context, id string) error {
	f.hold("start")
	return f.set(id, runtime.StateRunning)
}

func (f *fakeContainers) Stop(_ context.Context, id string, _ time.Duration) error {
	if err := f.check("Stop"); err != nil {
		return err
	}
	f.record("Stop " + id)
	return f.set(id, runtime.StateExited)
}

func (f *fakeContainers) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeContainers) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Remove "+id)
	delete(f.ctrs, id)
	f.ids.Remove(id)
	return nil
}

// Release is Remove with nothing left to reclaim: the fake keeps no files.
func (f *fakeContainers) Release(ctx context.Context, id string) (func(context.Context) error, error) {
	f.mu.Lock()
	_, ok := f.ctrs[id]
	f.mu.Unlock()
	if !ok {
		return nil, nil
	}
	f.Remove(ctx, id)
	return func(context.Context) error { return nil }, nil
}

func (f *fakeContainers) Get(id string) (*runtime.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.ctrs[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	cc := *c
	return &cc, nil
}

func (f *fakeContainers) Resolve(prefix string) (*runtime.Container, error) {
	f.mu.Lock()
	id, err := f.ids.Resolve(prefix)
	f.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("container %w", err)
	}
	return f.Get(id)
}

func (f *fakeContainers) Status(id string) (*runtime.Container, error) { return f.Get(id) }

func (f *fakeContainers) List() []*runtime.Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtime.Container
	for _, c := range f.ctrs {
		cc := *c
		out = append(out, &cc)
	}
	return out
}

func (f *fakeContainers) Events() <-chan runtime.Event { return nil }

func (f *fakeContainers) ExecSync(context.Context, string, []string, time.Duration) (runtime.ExecResult, error) {
	return runtime.ExecResult{}, nil
}

// faults makes a fake's call fail: a test sets the error an operation
// ("Mount", "MountImage:vol-b", ...) returns.
type faults struct {
	mu sync.Mutex
	m  map[string]error
}

func (f *faults) inject(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]error{}
	}
	f.m[op] = err
}

func (f *faults) check(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[op]
}

// fakeRootfs knows the images "busybox", "vol-a" and "vol-b", mounts
// every container at an empty directory, and keeps what exists so a test
// can see what a failure left.
type fakeRootfs struct {
	RootfsStore
	faults
	dir         string
	mu          sync.Mutex
	layers      map[string]bool // container id → writable layer exists
	mounted     map[string]bool // container id → layer mounted
	imageMounts map[string]int  // image id → mount count
}

func newFakeRootfs(dir string) *fakeRootfs {
	return &fakeRootfs{dir: dir, layers: map[string]bool{}, mounted: map[string]bool{}, imageMounts: map[string]int{}}
}

func (f *fakeRootfs) Status(_ context.Context, ref string) (storage.Image, error) {
	if err := f.check("Status"); err != nil {
		return storage.Image{}, err
	}
	switch ref {
	case "busybox", "vol-a", "vol-b":
		return storage.Image{ID: ref + "id"}, nil
	}
	return storage.Image{}, fmt.Errorf("image %s: %w", ref, errdefs.ErrNotFound)
}

func (f *fakeRootfs) CreateContainer(_ context.Context, id, name, _, _, _ string) (storage.ContainerFS, error) {
	if err := f.check("CreateContainer"); err != nil {
		return storage.ContainerFS{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.layers[id] = true
	return storage.ContainerFS{ID: id, Name: name}, nil
}

func (f *fakeRootfs) CreateMappedContainer(ctx context.Context, id, name, ref, label, meta string, _, _ []idmap.Mapping) (storage.ContainerFS, error) {
	return f.CreateContainer(ctx, id, name, ref, label, meta)
}

func (f *fakeRootfs) Mount(id string) (string, error) {
	if err := f.check("Mount"); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounted[id] = true
	return f.dir, nil
}

func (f *fakeRootfs) Unmount(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounted, id)
	return nil
}

func (f *fakeRootfs) DeleteContainer(id string) error {
	if err := f.check("DeleteContainer"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounted, id) // as the store's: it unmounts first
	delete(f.layers, id)
	return nil
}

func (f *fakeRootfs) ReleaseName(string) error { return f.check("ReleaseName") }

func (f *fakeRootfs) MountImage(ctx context.Context, ref string) (string, string, error) {
	if err := f.check("MountImage:" + ref); err != nil {
		return "", "", err
	}
	img, err := f.Status(ctx, ref)
	if err != nil {
		return "", "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.imageMounts[img.ID]++
	return f.dir, img.ID, nil
}

func (f *fakeRootfs) UnmountImage(imageID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.imageMounts[imageID]--; f.imageMounts[imageID] <= 0 {
		delete(f.imageMounts, imageID)
	}
	return nil
}

// left describes what storage holds, "" when nothing.
func (f *fakeRootfs) left() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.layers)+len(f.mounted)+len(f.imageMounts) == 0 {
		return ""
	}
	return fmt.Sprintf("layers %v, mounted %v, image mounts %v", f.layers, f.mounted, f.imageMounts)
}

// fakeStreaming hands out a fixed URL.
type fakeStreaming struct{}

func (fakeStreaming) GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return &runtimeapi.ExecResponse{Url: "http://x/exec"}, nil
}
func (fakeStreaming) GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return &runtimeapi.AttachResponse{Url: "http://x/attach"}, nil
}
func (fakeStreaming) GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return &runtimeapi.PortForwardResponse{Url: "http://x/pf"}, nil
}

type fakeEnv struct {
	svc    *RuntimeService
	pods   *fakePods
	ctrs   *fakeContainers
	rootfs *fakeRootfs
}

// newFakeEnv wires a RuntimeService on the fakes, with a ready
// non-privileged pod "pod1" and the seccomp profile root profileRoot.
func newFakeEnv(t *testing.T, profileRoot string) *fakeEnv {
	t.Helper()
	e := &fakeEnv{
		pods:   &fakePods{pods: map[string]*sandbox.Sandbox{}},
		ctrs:   &fakeContainers{ctrs: map[string]*runtime.Container{}},
		rootfs: newFakeRootfs(t.TempDir()),
	}
	// The namespace paths are only written into specs, never opened.
	e.pods.add(&sandbox.Sandbox{ID: "pod1", State: sandbox.StateReady,
		NetNSPath: "/fake/net", IPCNSPath: "/fake/ipc", UTSNSPath: "/fake/uts", Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"},
		}})
	e.svc = NewRuntimeService(Options{
		Pods:       e.pods,
		Containers: e.ctrs,
		Rootfs:     e.rootfs,
		Streaming:  fakeStreaming{},
		Spec: SpecDefaults{
			Host:               runtime.HostInfo{BoundingCaps: []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}, SeccompEnabled: true, Devices: []specs.LinuxDevice{}},
			SeccompProfileRoot: profileRoot,
		},
	})
	return e
}

// client serves svc over an in-memory listener and returns a client, so a
// test sees what crosses the gRPC boundary: codes and message sizes.
func (e *fakeEnv) client(t *testing.T) runtimeapi.RuntimeServiceClient {
	return runtimeapi.NewRuntimeServiceClient(e.conn(t))
}

// conn serves svc, and an image service on no store, through the same
// server options as the daemon's.
func (e *fakeEnv) conn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(ServerOptions()...)
	Register(srv, e.svc, NewImageService(nil))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// add records a container directly, as if created earlier.
func (f *fakeContainers) add(c *runtime.Container) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctrs[c.ID] = c
	f.ids.Add(c.ID)
}

// holds tells whether name is reserved.
func (n *nameIndex) holds(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.names[name]
	return ok
}
