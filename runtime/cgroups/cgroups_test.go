package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/mountinfo"
)

// tree writes a fixture file system: path → content ("" makes a dir).
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if content == "" {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// writableUnder fakes delegation: only dirs under one of the given
// prefixes are writable (the fixtures are all root's).
func writableUnder(root string, prefixes ...string) func(string) bool {
	return func(dir string) bool {
		for _, p := range prefixes {
			full := filepath.Join(root, p)
			if dir == full || strings.HasPrefix(dir, full+"/") {
				return true
			}
		}
		return false
	}
}

const hybridSelf = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n3:cpuset:/\n0::/\n"

func TestDetect(t *testing.T) {
	hybrid := map[string]string{
		"cpu/crib-u": "", "cpuacct/crib-u": "", "pids/crib-u": "", "cpuset": "",
		"memory/process_api/abc/crib-u": "", "unified/cgroup.procs": "1\n",
	}
	cases := []struct {
		name     string
		files    map[string]string
		self     string
		manager  string
		parent   string
		writable []string
		wantName string
		wantVer  int
		wantErr  error
		inReason string
	}{
		{"v1 delegated by an admin", hybrid, hybridSelf, "auto", "/crib-u",
			[]string{"cpu/crib-u", "cpuacct/crib-u", "pids/crib-u", "memory/process_api/abc/crib-u"}, "cgroupfs", 1, nil, "not delegated: cpuset"},
		{"v1 nothing writable", hybrid, hybridSelf, "auto", "", nil, "none", 0, nil, "scripts/cgroup-delegate.sh"},
		{"v1 forced cgroupfs without delegation", hybrid, hybridSelf, "cgroupfs", "", nil, "", 0, errdefs.ErrUnavailable, ""},
		{"v2 delegated", map[string]string{
			"cgroup.controllers": "cpu io memory pids hugetlb", "user.slice/u/crib/cgroup.controllers": "cpu memory pids",
			"user.slice/u/crib/cgroup.subtree_control": "\n", "user.slice/u/crib/cgroup.procs": "\n",
		}, "0::/user.slice/u/crib\n", "auto", "", []string{"user.slice/u/crib"}, "cgroupfs", 2, nil, "cpu memory pids"},
		{"v2 own cgroup holds processes", map[string]string{
			"cgroup.controllers": "cpu memory", "user.slice/u/cgroup.controllers": "cpu memory",
			"user.slice/u/cgroup.subtree_control": "\n", "user.slice/u/cgroup.procs": "1234\n",
		}, "0::/user.slice/u\n", "auto", "", []string{"user.slice/u"}, "none", 0, nil, "holds processes"},
		{"v2 not delegated", map[string]string{"cgroup.controllers": "cpu memory", "user.slice/cgroup.procs": "1\n"},
			"0::/user.slice\n", "auto", "", nil, "none", 0, nil, "not delegated"},
		{"none forced", hybrid, hybridSelf, "none", "", nil, "none", 0, nil, "configured"},
		{"systemd is not a manager crib has", hybrid, hybridSelf, "systemd", "", nil, "", 0, errdefs.ErrInvalidArgument, ""},
		{"unknown manager", hybrid, hybridSelf, "lxc", "", nil, "", 0, errdefs.ErrInvalidArgument, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, tc.files)
			self := filepath.Join(t.TempDir(), "cgroup")
			os.WriteFile(self, []byte(tc.self), 0o644)
			m, reason, err := Detect(DetectOptions{Manager: tc.manager, Parent: tc.parent, Root: root, ProcSelfCgroup: self, Writable: writableUnder(root, tc.writable...)})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Name() != tc.wantName || m.Version() != tc.wantVer || !strings.Contains(reason, tc.inReason) {
				t.Fatalf("got %s v%d %q", m.Name(), m.Version(), reason)
			}
		})
	}
}

// TestV1PathForms checks that a v1 pod path resolves to the delegated
// base in every hierarchy, the way runc resolves cgroupsPath.
func TestV1PathForms(t *testing.T) {
	cases := []struct {
		name, self, parent string
		dirs               []string
		wantPath           string
		// rootedMemory mounts the memory hierarchy from this cgroup, as
		// crib's cgroup view does (server/cgroupview.go).
		rootedMemory string
	}{
		{"memory below own cgroup: relative form", hybridSelf, "/crib-u",
			[]string{"cpu/crib-u", "memory/process_api/abc/crib-u"}, "crib-u/crib-pod-p1", ""},
		{"crib started inside the delegated cgroups", "4:memory:/process_api/abc/crib-u\n1:cpu:/crib-u\n", "",
			[]string{"cpu/crib-u", "memory/process_api/abc/crib-u"}, "crib-pod-p1", ""},
		{"same absolute place, own cgroups differ", "4:memory:/a\n1:cpu:/b\n", "/crib-u",
			[]string{"cpu/crib-u", "memory/crib-u"}, "/crib-u/crib-pod-p1", ""},
		{"memory mounted from crib's own cgroup (the cgroup view): absolute form from the mount", hybridSelf, "/crib-u",
			[]string{"cpu/crib-u", "memory/crib-u"}, "/crib-u/crib-pod-p1", "/process_api/abc"},
		{"crib started inside the delegated cgroups, memory mounted from there (the cgroup view)", "4:memory:/process_api/abc/crib-u\n1:cpu:/crib-u\n", "",
			[]string{"cpu/crib-u", "memory"}, "crib-pod-p1", "/process_api/abc/crib-u"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for _, d := range tc.dirs {
				files[d] = ""
			}
			root := tree(t, files)
			self := filepath.Join(t.TempDir(), "cgroup")
			os.WriteFile(self, []byte(tc.self), 0o644)
			mounts := func() ([]mountinfo.Entry, error) {
				if tc.rootedMemory == "" {
					return nil, nil
				}
				return []mountinfo.Entry{
					{Mount: mountinfo.Mount{Point: filepath.Join(root, "memory"), FSType: "cgroup"}, Root: "/"},
					{Mount: mountinfo.Mount{Point: filepath.Join(root, "memory"), FSType: "cgroup"}, Root: tc.rootedMemory},
				}, nil
			}
			m, reason, err := Detect(DetectOptions{Parent: tc.parent, Root: root, ProcSelfCgroup: self, Writable: writableUnder(root, tc.dirs...), Mounts: mounts})
			if err != nil || m.Version() != 1 {
				t.Fatalf("%v %q", err, reason)
			}
			path, err := m.CreatePod("p1", "", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if path != tc.wantPath {
				t.Fatalf("pod path %q, want %q", path, tc.wantPath)
			}
			for _, d := range tc.dirs {
				if st, err := os.Stat(filepath.Join(root, d, "crib-pod-p1")); err != nil || !st.IsDir() {
					t.Errorf("no pod cgroup under %s", d)
				}
			}
			if got := m.ContainerPath(path, "c1"); got != filepath.Join(tc.wantPath, "crib-c1") {
				t.Errorf("container path %q", got)
			}
		})
	}
}

func TestV2CreateWritesLimitsAndEnablesControllers(t *testing.T) {
	root := tree(t, map[string]string{
		"cgroup.controllers": "cpu memory pids", "crib/cgroup.controllers": "cpu memory pids io",
		"crib/cgroup.subtree_control": "\n", "crib/cgroup.procs": "\n",
	})
	self := filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(self, []byte("0::/crib\n"), 0o644)
	m, _, err := Detect(DetectOptions{Root: root, ProcSelfCgroup: self, Writable: writableUnder(root, "crib")})
	if err != nil || m.Version() != 2 {
		t.Fatal(err)
	}
	res := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 100 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 1024}
	over := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 10 << 20, CpuQuota: 5000, CpuPeriod: 50000}
	path, err := m.CreatePod("p", "kubepods/burstable", res, over)
	if err != nil {
		t.Fatal(err)
	}
	if path != "/crib/kubepods/burstable/crib-pod-p" {
		t.Fatalf("path %q", path)
	}
	want := map[string]string{
		"crib/cgroup.subtree_control":                    "+cpu +io +memory +pids",
		"crib/kubepods/cgroup.subtree_control":           "+cpu +io +memory +pids",
		"crib/kubepods/burstable/cgroup.subtree_control": "+cpu +io +memory +pids",
		"crib/kubepods/burstable/crib-pod-p/memory.max":  fmt.Sprint(110 << 20),
		"crib/kubepods/burstable/crib-pod-p/cpu.max":     "60000 100000",
		"crib/kubepods/burstable/crib-pod-p/cpu.weight":  "39",
	}
	for f, v := range want {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || string(b) != v {
			t.Errorf("%s = %q (%v), want %q", f, b, err, v)
		}
	}
	if _, err := m.CreatePod("q", "../escape", nil, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("parent with .. accepted: %v", err)
	}
}

func TestV2Stats(t *testing.T) {
	root := tree(t, map[string]string{
		"pod/cpu.stat":       "usage_usec 1500\nuser_usec 1000\n",
		"pod/memory.current": "4096000\n",
		"pod/memory.stat":    "anon 2000000\ninactive_file 96000\npgfault 7\npgmajfault 2\n",
		"pod/memory.events":  "low 0\noom 1\noom_kill 1\n",
		"pod/pids.current":   "3\n",
	})
	m := &v2{root: root}
	s, err := m.Stats("/pod")
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{CPUUsageNs: 1500000, MemoryUsage: 4096000, MemoryWorkingSet: 4000000, MemoryRSS: 2000000, PageFaults: 7, MajorPageFaults: 2, Pids: 3, OOMKills: 1}
	if *s != want {
		t.Fatalf("got %+v, want %+v", *s, want)
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 2: 1, 1024: 39, 262144: 10000} {
		if got := sharesToWeight(shares); got != want {
			t.Errorf("sharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}
