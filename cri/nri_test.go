package cri

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/nri"
)

// nriPlugin is an external NRI plugin on the nri module's stub; its hooks
// let a test hold or fail an event.
type nriPlugin struct {
	mu     sync.Mutex
	events []string
	ready  chan struct{}
	onRun  func(pod *api.PodSandbox) error
}

func (p *nriPlugin) record(e string) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

func (p *nriPlugin) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *nriPlugin) Synchronize(context.Context, []*api.PodSandbox, []*api.Container) ([]*api.ContainerUpdate, error) {
	close(p.ready)
	return nil, nil
}

func (p *nriPlugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox " + pod.GetName())
	if p.onRun != nil {
		return p.onRun(pod)
	}
	return nil
}

func (p *nriPlugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox " + pod.GetName())
	return nil
}

func (p *nriPlugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RemovePodSandbox " + pod.GetName())
	return nil
}

func (p *nriPlugin) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer " + c.GetName())
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("FROM_NRI", "1")
	return adj, nil, nil
}

func (p *nriPlugin) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("StartContainer " + c.GetName())
	return nil
}

func (p *nriPlugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer " + c.GetName())
	return nil, nil
}

func (p *nriPlugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("RemoveContainer " + c.GetName())
	return nil
}

var nriLibraryOnce sync.Once

// withNRI starts an NRI host for e's service and connects p to it.
func withNRI(t *testing.T, e *fakeEnv, p *nriPlugin) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.NRI{Enable: true, SocketPath: filepath.Join(dir, "nri.sock"),
		PluginDir: filepath.Join(dir, "p"), PluginConfigDir: filepath.Join(dir, "c"),
		RegistrationTimeout: "5s", RequestTimeout: "5s"}
	// Once per test binary: the library's settings are process-wide, and
	// an earlier test's host may still be logging.
	nriLibraryOnce.Do(func() {
		if err := nri.ConfigureLibrary(cfg, nil); err != nil {
			t.Fatal(err)
		}
	})
	h, err := nri.New(nri.Options{
		Config:      cfg,
		RuntimeName: "crib", RuntimeVersion: "test", State: e.svc.NRIState,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	e.svc.nri = h
	p.ready = make(chan struct{})
	s, err := stub.New(p, stub.WithPluginName("test"), stub.WithPluginIdx("10"), stub.WithSocketPath(filepath.Join(dir, "nri.sock")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); s.Stop() })
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-p.ready
}

func newPodConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: name + "-uid"}}
}

// While plugins handle RunPodSandbox the pod exists but is not shown: not
// listed, no status, no containers.
func TestNRIPodHiddenDuringRunPodSandbox(t *testing.T) {
	e := newFakeEnv(t, "")
	reached, release := make(chan string), make(chan struct{})
	p := &nriPlugin{onRun: func(pod *api.PodSandbox) error {
		reached <- pod.GetId()
		<-release
		return nil
	}}
	withNRI(t, e, p)
	c := e.client(t)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: newPodConfig("slow")})
		done <- err
	}()
	id := <-reached
	list, err := c.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range list.Items {
		if sb.Id == id {
			t.Errorf("pod %s listed while its RunPodSandbox event is out", id)
		}
	}
	if _, err := c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStatus during the event: %v, want NotFound", err)
	}
	_, err = c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: id, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "early"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}, Command: []string{"true"},
		Linux: containerPIDMode()}})
	if status.Code(err) != codes.NotFound {
		t.Errorf("CreateContainer in a pod whose RunPodSandbox event is out: %v, want NotFound", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("PodSandboxStatus after the event: %v", err)
	}
}

// A plugin refusing a pod fails RunPodSandbox and leaves nothing: the pod
// is gone and its name free for a retry.
func TestNRIRefusedPodIsUndone(t *testing.T) {
	e := newFakeEnv(t, "")
	var once sync.Once
	p := &nriPlugin{onRun: func(*api.PodSandbox) error {
		var err error
		once.Do(func() { err = errors.New("no room") })
		return err
	}}
	withNRI(t, e, p)
	c := e.client(t)
	ctx := context.Background()
	_, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: newPodConfig("refused")})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RunPodSandbox refused by a plugin: %v, want FailedPrecondition", err)
	}
	for _, sb := range e.pods.List() {
		if sb.Config.GetMetadata().GetName() == "refused" {
			t.Fatalf("refused pod %s left behind", sb.ID)
		}
	}
	if _, err := c.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: newPodConfig("refused")}); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

// The plugin's adjustment is in the spec the runtime creates the
// container with, and the container's events reach it in NRI's order,
// StopContainer once.
func TestNRIContainerEvents(t *testing.T) {
	e := newFakeEnv(t, "")
	p := &nriPlugin{}
	withNRI(t, e, p)
	c := e.client(t)
	ctx := context.Background()
	ctr, err := c.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1", Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}, Command: []string{"sleep", "1"},
		Linux: containerPIDMode()}})
	if err != nil {
		t.Fatal(err)
	}
	if env := e.ctrs.created[0].Spec.Process.Env; !slices.Contains(env, "FROM_NRI=1") {
		t.Fatalf("the plugin's adjustment is not in the runtime's spec: %v", env)
	}
	id := ctr.ContainerId
	for _, call := range []func() error{
		func() error {
			_, err := c.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		},
		func() error {
			_, err := c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id})
			return err
		},
		func() error {
			_, err := c.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id})
			return err
		},
		func() error {
			_, err := c.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		},
		func() error {
			_, err := c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "pod1"})
			return err
		},
		func() error {
			_, err := c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "pod1"})
			return err
		},
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"CreateContainer app", "StartContainer app", "StopContainer app", "RemoveContainer app", "StopPodSandbox web"}
	if got := p.seen(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// containerPIDMode is the kubelet's default: the container's own PID
// namespace (the fake pod has no shared one).
func containerPIDMode() *runtimeapi.LinuxContainerConfig {
	return &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}}
}
