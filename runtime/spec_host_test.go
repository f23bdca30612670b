package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

func TestPageSizeName(t *testing.T) {
	for kib, want := range map[uint64]string{64: "64KB", 2048: "2MB", 1048576: "1GB", 1536: "1536KB", 16777216: "16GB"} {
		if got := pageSizeName(kib); got != want {
			t.Errorf("pageSizeName(%d) = %q, want %q", kib, got, want)
		}
	}
}

func TestHugepageSizes(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"hugepages-2048kB", "hugepages-1048576kB", "not-a-size"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := hugepageSizes(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"1GB", "2MB"}) {
		t.Errorf("got %v", got)
	}
	if got, err := hugepageSizes(filepath.Join(dir, "absent")); err != nil || got != nil {
		t.Errorf("absent directory: %v, %v", got, err)
	}
}

func TestReleaseAtLeast(t *testing.T) {
	for _, tt := range []struct {
		release string
		want    bool
	}{
		{"5.12.0", true}, {"5.11.22-foo", false}, {"6.1.0-18-amd64", true}, {"5.12-rc1", true}, {"4.19.0", false}, {"garbage", false},
	} {
		if got := releaseAtLeast(tt.release, 5, 12); got != tt.want {
			t.Errorf("releaseAtLeast(%q, 5, 12) = %v", tt.release, got)
		}
	}
}

// TestProbeHost reads this machine; it checks only what holds on any Linux
// host crib supports.
func TestProbeHost(t *testing.T) {
	h, err := ProbeHost()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(h.BoundingCaps, "CAP_KILL") && os.Geteuid() == 0 {
		t.Errorf("root's bounding set lacks CAP_KILL: %v", h.BoundingCaps)
	}
	if h.MinOOMScoreAdj < -1000 || h.MinOOMScoreAdj > 1000 {
		t.Errorf("oom_score_adj %d out of range", h.MinOOMScoreAdj)
	}
	i := slices.IndexFunc(h.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/null" })
	if i < 0 {
		t.Fatal("/dev/null not among the host devices")
	}
	if d := h.Devices[i]; d.Type != "c" || d.Major != 1 || d.Minor != 3 {
		t.Errorf("/dev/null = %+v, want c 1:3", d)
	}
}

func TestDeviceAtRefusesNonDevices(t *testing.T) {
	_, err := deviceAt(testdataDir(t) + "/host/vol/flagfile")
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("got %v, want ErrInvalidArgument", err)
	}
}

// TestGenerateSpecWithSystemProbes runs the public entry point against this
// machine: a private host mount, a real device, the real mount table.
func TestGenerateSpecWithSystemProbes(t *testing.T) {
	in, td := validInput(t)
	in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: td + "/host/vol-link", Readonly: true}}
	in.Config.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/sink", HostPath: "/dev/null", Permissions: "rw"}}
	in.Rootless = false
	spec, err := GenerateSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	m := spec.Mounts[len(spec.Mounts)-1]
	if m.Destination != "/data" || m.Source != td+"/host/vol" {
		t.Errorf("last mount = %+v, want /data from the resolved symlink", m)
	}
	d := spec.Linux.Devices
	if len(d) != 1 || d[0].Path != "/dev/sink" || d[0].Major != 1 || d[0].Minor != 3 {
		t.Errorf("devices = %+v", d)
	}
}
