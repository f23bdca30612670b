package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/runtime/cgroups"
)

// fullConfig asks for every step: own namespaces, a shared PID namespace,
// sysctls, host ports, resources.
func fullConfig(name string) *runtimeapi.PodSandboxConfig {
	cfg := podConfig(name)
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_local_port_range": "20000 30000"}
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20, CpuShares: 512}
	cfg.Linux.Overhead = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20}
	cfg.PortMappings = []*runtimeapi.PortMapping{{HostPort: 18081, ContainerPort: 80}}
	return cfg
}

// leftovers is everything a pod could leak.
type leftovers struct {
	mounts, files, leases, rules, reapers, cgroups []string
	labels                                         []string
}

func snapshot(t *testing.T, m *Manager, opts Options, cgroupDirs []string) leftovers {
	var l leftovers
	l.mounts = mountsBelow(t, opts.RunRoot)
	l.files = append(filesBelow(t, filepath.Join(opts.RunRoot, "sandboxes")), filesBelow(t, filepath.Join(opts.Root, "sandboxes"))...)
	l.files = append(l.files, filesBelow(t, filepath.Join(opts.Root, "cni", "cache"))...)
	l.leases = leaseFiles(t, m)
	l.rules = natRules(t)
	l.reapers = liveChildren(t, "catatonit")
	for _, d := range cgroupDirs {
		l.cgroups = append(l.cgroups, subdirs(d)...)
	}
	l.labels = opts.Labels.(*fakeLabels).used()
	return l
}

func subdirs(dir string) []string {
	var out []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func (a leftovers) diff(b leftovers) string {
	var s string
	for _, f := range []struct {
		name string
		x, y []string
	}{{"mounts", a.mounts, b.mounts}, {"files", a.files, b.files}, {"leases", a.leases, b.leases},
		{"nat rules", a.rules, b.rules}, {"reapers", a.reapers, b.reapers}, {"cgroups", a.cgroups, b.cgroups},
		{"selinux levels", a.labels, b.labels}} {
		if !slices.Equal(f.x, f.y) {
			s += fmt.Sprintf("%s: before %v, after %v\n", f.name, f.x, f.y)
		}
	}
	return s
}

// TestCreateRollsBackAtEveryStep fails Create before each of its steps in
// turn (so after the previous one) and checks nothing is left: mounts,
// files, CNI cache, host-local leases, NAT rules, reapers, cgroups, labels.
func TestCreateRollsBackAtEveryStep(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	opts.HostPorts = &recordingPorts{}
	cg, cgDirs := testCgroupManager(t)
	opts.Cgroups = cg
	m := newTestManager(t, opts)
	ctx := context.Background()

	// Warm up: portmap's shared chains stay once made, so take the
	// baseline after one full create and remove.
	mustCreate(t, m, "warmup", fullConfig("warmup"))
	if err := m.Remove(ctx, "warmup"); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, m, opts, cgDirs)

	injected := errors.New("injected failure")
	for _, s := range m.steps() {
		t.Run(s.name, func(t *testing.T) {
			m.beforeStep = func(name string) error {
				if name == s.name {
					return injected
				}
				return nil
			}
			defer func() { m.beforeStep = nil }()
			_, err := m.Create(ctx, "doomed", fullConfig("doomed"), "runc")
			if !errors.Is(err, injected) {
				t.Fatalf("Create: %v", err)
			}
			if d := before.diff(snapshot(t, m, opts, cgDirs)); d != "" {
				t.Errorf("failing at %s left:\n%s", s.name, d)
			}
			if _, err := m.Get("doomed"); err == nil {
				t.Error("the failed pod is listed")
			}
			if _, err := m.Resolve("doom"); err == nil {
				t.Error("the failed pod resolves by prefix")
			}
		})
	}
	// And the same pod still creates cleanly afterwards.
	sb := mustCreate(t, m, "doomed", fullConfig("doomed"))
	if cg.Name() != "none" && sb.CgroupParent == "" {
		t.Error("no pod cgroup")
	}
}

// testCgroupManager delegates a cgroup v1 parent to the test when the
// host has one (as scripts/cgroup-delegate.sh does for a user) and returns
// the manager plus the directories pod cgroups appear in.
func testCgroupManager(t *testing.T) (cgroups.Manager, []string) {
	parent := fmt.Sprintf("crib-sandbox-test-%d", os.Getpid())
	dirs, err := makeV1Parent(parent)
	t.Cleanup(func() {
		for _, d := range dirs {
			os.Remove(d)
		}
	})
	if err != nil {
		t.Logf("no cgroup v1 parent (%v): rollback test runs without cgroups", err)
		return cgroups.None(), nil
	}
	m, reason, err := cgroups.Detect(cgroups.DetectOptions{Manager: "cgroupfs", Parent: "/" + parent})
	if err != nil {
		t.Fatalf("detecting the test cgroups: %v", err)
	}
	t.Logf("cgroups: %s", reason)
	return m, dirs
}

// makeV1Parent makes parent under the cpu, cpuacct and pids roots and
// under the memory cgroup this process sits in.
func makeV1Parent(parent string) ([]string, error) {
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.usage_in_bytes"); err != nil {
		return nil, errors.New("no cgroup v1 memory hierarchy")
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, c := range []string{"cpu", "cpuacct", "pids", "memory"} {
		dir := filepath.Join("/sys/fs/cgroup", c, parent)
		if c == "memory" {
			dir = filepath.Join("/sys/fs/cgroup/memory", ownMemoryCgroup(string(own)), parent)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return dirs, err
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

func ownMemoryCgroup(procSelfCgroup string) string {
	for _, line := range strings.Split(procSelfCgroup, "\n") {
		var n int
		var rest string
		if _, err := fmt.Sscanf(line, "%d:memory:%s", &n, &rest); err == nil {
			return rest
		}
	}
	return "/"
}
