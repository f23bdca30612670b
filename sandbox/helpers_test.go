package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/procfs"
	"github.com/crib-dev/crib/runtime/cgroups"
)

func testOptions(t *testing.T) Options {
	root := t.TempDir()
	return Options{
		Root: root, RunRoot: t.TempDir(),
		CNIConfDir:    filepath.Join(root, "cni", "net.d"),
		CNIPluginDirs: []string{"/usr/lib/cni"},
		Cgroups:       cgroups.None(),
		Labels:        newFakeLabels(),
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

func newTestManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, sb := range m.List() {
			if err := m.Remove(context.Background(), sb.ID); err != nil {
				t.Errorf("cleanup: removing %s: %v", sb.ID, err)
			}
		}
	})
	return m
}

func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Hostname: name,
		Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
	}
}

func hostNetwork(cfg *runtimeapi.PodSandboxConfig) *runtimeapi.PodSandboxConfig {
	cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	return cfg
}

func mustCreate(t *testing.T, m *Manager, id string, cfg *runtimeapi.PodSandboxConfig) *Sandbox {
	t.Helper()
	sb, err := m.Create(context.Background(), id, cfg, "runc")
	if err != nil {
		t.Fatalf("creating %s: %v", id, err)
	}
	return sb
}

// recordingPorts stands in for crib's parent, which forwards host ports
// from the host's network namespace; that side belongs to the server
// package and needs the rootless parent/child pair to exist.
type recordingPorts struct {
	mu        sync.Mutex
	exposed   map[string][]PortMapping
	unexposed []string
	// failUnexpose makes the next Unexpose fail, as a Stop cut short.
	failUnexpose bool
}

func (r *recordingPorts) Expose(_ context.Context, id string, ports []PortMapping) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exposed == nil {
		r.exposed = map[string][]PortMapping{}
	}
	r.exposed[id] = ports
	return nil
}

func (r *recordingPorts) Unexpose(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failUnexpose {
		r.failUnexpose = false
		return errors.New("unexpose failed")
	}
	delete(r.exposed, id)
	r.unexposed = append(r.unexposed, id)
	return nil
}

// fakeLabels is an MCS allocator with go-selinux's contract: SELinux is
// off on this machine, so go-selinux itself returns empty labels.
type fakeLabels struct {
	mu    sync.Mutex
	inUse map[string]bool
}

func newFakeLabels() *fakeLabels { return &fakeLabels{inUse: map[string]bool{}} }

func (f *fakeLabels) Init(opts []string) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	level, typ := "", "container_t"
	for _, o := range opts {
		k, v, ok := strings.Cut(o, ":")
		if !ok {
			return "", "", fmt.Errorf("bad label option %q", o)
		}
		switch k {
		case "level":
			level = v
		case "type":
			typ = v
		}
	}
	if level == "" {
		for c := 0; level == "" && c < 1024; c++ {
			if l := fmt.Sprintf("s0:c%d,c%d", c, c+1); !f.inUse[l] {
				level = l
			}
		}
	}
	f.inUse[level] = true
	return "system_u:system_r:" + typ + ":" + level, "system_u:object_r:container_file_t:" + level, nil
}

func levelOf(label string) string {
	parts := strings.SplitN(label, ":", 4)
	if len(parts) < 4 {
		return ""
	}
	return parts[3]
}

func (f *fakeLabels) Reserve(l string) { f.mu.Lock(); f.inUse[levelOf(l)] = true; f.mu.Unlock() }
func (f *fakeLabels) Release(l string) { f.mu.Lock(); delete(f.inUse, levelOf(l)); f.mu.Unlock() }
func (f *fakeLabels) used() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for l := range f.inUse {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// natRules is the NAT table in the test's network namespace.
func natRules(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// podRules are the NAT rules that mention a pod (portmap and ipMasq tag
// theirs with the container id).
func podRules(t *testing.T, id string) []string {
	var out []string
	for _, r := range natRules(t) {
		if strings.Contains(r, id) {
			out = append(out, r)
		}
	}
	return out
}

func leaseFiles(t *testing.T, m *Manager) []string {
	t.Helper()
	list, err := m.net.config()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, dir := range hostLocalDataDirs(list) {
		out = append(out, leasesOf(dir, func(string) bool { return true })...)
	}
	return out
}

func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// filesBelow lists every path under dir.
func filesBelow(t *testing.T, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil && p != dir {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// liveChildren lists our live children running prog (reapers).
func liveChildren(t *testing.T, prog string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		st, err := procfs.ParseStat(b)
		if err != nil || st.State == 'Z' || st.Ppid != os.Getpid() {
			continue
		}
		if strings.Contains(s, "("+prog+")") {
			out = append(out, e.Name())
		}
	}
	return out
}
