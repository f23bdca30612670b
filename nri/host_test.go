package nri

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/config"
)

// testPlugin is an external plugin built on the nri module's stub, talking
// the real protocol over the host's socket.
type testPlugin struct {
	mu     sync.Mutex
	synced []string
	events []string
	// hang, when set, blocks CreateContainer until the test ends, past
	// the request's deadline: a plugin that answered when its context
	// ended would race the host's own timeout and sometimes win it.
	hang chan struct{}
	// ready is closed by Synchronize.
	ready chan struct{}
}

func (p *testPlugin) Synchronize(_ context.Context, _ []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range ctrs {
		p.synced = append(p.synced, c.GetId())
	}
	close(p.ready)
	return nil, nil
}

func (p *testPlugin) CreateContainer(ctx context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("create:" + c.GetName())
	if p.hang != nil {
		<-p.hang
		return nil, nil, nil
	}
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("FROM_PLUGIN", "yes")
	adj.AddAnnotation("example.com/plugin", "adjusted")
	adj.AddMount(&api.Mount{Source: "/tmp", Destination: "/plugin-tmp", Type: "bind", Options: []string{"rbind", "ro"}})
	adj.AddRlimit("RLIMIT_NOFILE", 512, 256)
	return adj, nil, nil
}

// UpdateContainer pins every update to CPU 0.
func (p *testPlugin) UpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.record("update:" + c.GetName())
	u := &api.ContainerUpdate{}
	u.SetContainerId(c.GetId())
	u.SetLinuxCPUSetCPUs("0")
	return []*api.ContainerUpdate{u}, nil
}

func (p *testPlugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("stop:" + c.GetName())
	return nil, nil
}

func (p *testPlugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("remove:" + c.GetName())
	return nil
}

func (p *testPlugin) record(e string) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

func (p *testPlugin) seen() ([]string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.synced), slices.Clone(p.events)
}

func testPod() Pod {
	return Pod{ID: "pod1", Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Uid: "u", Namespace: "ns"},
	}}
}

func testContainer(id, name string) Container {
	return Container{ID: id, PodID: "pod1", Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
	}}
}

var libraryLogOnce sync.Once

func startHost(t *testing.T, timeout string, existing ...Container) *Host {
	t.Helper()
	dir := t.TempDir()
	cfg := config.NRI{
		Enable: true, SocketPath: filepath.Join(dir, "run", "nri.sock"),
		PluginDir: filepath.Join(dir, "plugins"), PluginConfigDir: filepath.Join(dir, "conf.d"),
		RegistrationTimeout: "5s", RequestTimeout: timeout,
	}
	// Each test sets the request timeout it tests (the tests run one
	// after another); the library's logger is set once, as an earlier
	// test's host may still be logging.
	if err := setLibraryTimeouts(cfg); err != nil {
		t.Fatal(err)
	}
	libraryLogOnce.Do(func() { nrilog.Set(slogger{slog.Default()}) })
	h, err := New(Options{
		Config:      cfg,
		RuntimeName: "crib", RuntimeVersion: "test",
		State: func() ([]Pod, []Container) { return []Pod{testPod()}, existing },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

// connect registers p on h's socket and returns once it is synchronised.
func connect(t *testing.T, h *Host, name string, p *testPlugin) {
	t.Helper()
	p.ready = make(chan struct{})
	s, err := stub.New(p, stub.WithPluginName(name), stub.WithPluginIdx("10"), stub.WithSocketPath(h.opts.Config.SocketPath))
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

func TestSocketOnlyForCribsUser(t *testing.T) {
	h := startHost(t, "2s")
	for path, want := range map[string]os.FileMode{
		h.opts.Config.SocketPath:               0o600,
		filepath.Dir(h.opts.Config.SocketPath): 0o700,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
}

func TestPluginSyncAndAdjustment(t *testing.T) {
	h := startHost(t, "2s", testContainer("old", "before"))
	p := &testPlugin{}
	connect(t, h, "adjuster", p)
	if synced, _ := p.seen(); !slices.Contains(synced, "old") {
		t.Fatalf("plugin was not synchronised with the existing container: %v", synced)
	}

	spec := &specs.Spec{Process: &specs.Process{Args: []string{"sh"}, Env: []string{"PATH=/bin"}}, Linux: &specs.Linux{}}
	done, err := h.CreateContainer(context.Background(), testPod(), testContainer("c1", "web"), spec)
	if err != nil {
		t.Fatal(err)
	}
	done()
	if !slices.Contains(spec.Process.Env, "FROM_PLUGIN=yes") {
		t.Errorf("env not adjusted: %v", spec.Process.Env)
	}
	if spec.Annotations["example.com/plugin"] != "adjusted" {
		t.Errorf("annotations not adjusted: %v", spec.Annotations)
	}
	if !slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/plugin-tmp" && m.Source == "/tmp" }) {
		t.Errorf("mount not added: %v", spec.Mounts)
	}
	if !slices.ContainsFunc(spec.Process.Rlimits, func(r specs.POSIXRlimit) bool { return r.Type == "RLIMIT_NOFILE" && r.Hard == 512 }) {
		t.Errorf("rlimit not added: %v", spec.Process.Rlimits)
	}

	// An update gets the plugin's adjustment on top of the request.
	res, err := h.UpdateContainer(context.Background(), testPod(), testContainer("c1", "web"),
		&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 28})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetCpusetCpus() != "0" || res.GetMemoryLimitInBytes() != 1<<28 {
		t.Errorf("update: %v, want cpuset 0 and the requested memory limit", res)
	}

	// An exit and an explicit stop are one StopContainer event, and it
	// comes before RemoveContainer.
	h.StopContainer(context.Background(), testPod(), testContainer("c1", "web"))
	h.StopContainer(context.Background(), testPod(), testContainer("c1", "web"))
	h.RemoveContainer(context.Background(), testPod(), testContainer("c1", "web"))
	_, events := p.seen()
	if want := []string{"create:web", "update:web", "stop:web", "remove:web"}; !slices.Equal(events, want) {
		t.Errorf("events %v, want %v", events, want)
	}
}

// A plugin that never answers is dropped after the request timeout and
// the request goes on without it.
func TestHungPluginIsDropped(t *testing.T) {
	h := startHost(t, "200ms")
	hang := make(chan struct{})
	p := &testPlugin{hang: hang}
	connect(t, h, "hung", p)
	// After connect's: cleanups run last first, and the plugin's stub
	// stops only once its handler has returned.
	t.Cleanup(func() { close(hang) })
	for _, id := range []string{"c1", "c2", "c3"} {
		spec := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
		done, err := h.CreateContainer(context.Background(), testPod(), testContainer(id, id), spec)
		if err != nil {
			t.Fatalf("%s: a hung plugin failed the request: %v", id, err)
		}
		done()
	}
	// The library drops the plugin when its request times out; a request
	// already relayed meanwhile may still reach it, a later one must not.
	if _, events := p.seen(); len(events) == 0 || slices.Contains(events, "create:c3") {
		t.Fatalf("the hung plugin was not dropped: it saw %v", events)
	}
}

func TestDisabledHostIsNoop(t *testing.T) {
	h, err := New(Options{Config: config.NRI{Enable: false}})
	if err != nil || h != nil {
		t.Fatalf("New(disabled) = %v, %v", h, err)
	}
	spec := &specs.Spec{}
	done, err := h.CreateContainer(context.Background(), testPod(), testContainer("c", "c"), spec)
	if err != nil {
		t.Fatal(err)
	}
	done()
	if err := h.RunPodSandbox(context.Background(), testPod()); err != nil {
		t.Fatal(err)
	}
}
