package nri

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

type fakeLimits struct {
	oom       int
	hard      uint64
	deviceErr error
}

func (f fakeLimits) oomScoreAdj() (int, error) { return f.oom, nil }
func (f fakeLimits) rlimit(typ string) (uint64, bool, error) {
	_, ok := rlimitTypes[typ]
	return f.hard, ok, nil
}
func (f fakeLimits) deviceUsable(string) error { return f.deviceErr }

func TestValidateAdjustment(t *testing.T) {
	host := fakeLimits{oom: 0, hard: 1024, deviceErr: errors.New("permission denied")}
	tests := []struct {
		name     string
		rootless bool
		adjust   func(*api.ContainerAdjustment)
		claim    func(*api.OwningPlugins)
		want     string // "" = accepted
	}{
		{name: "plain env and mount", rootless: true, adjust: func(a *api.ContainerAdjustment) {
			a.AddEnv("A", "b")
			a.AddMount(&api.Mount{Source: "/x", Destination: "/y", Type: "bind"})
		}},
		{name: "relative mount", adjust: func(a *api.ContainerAdjustment) {
			a.AddMount(&api.Mount{Source: "/x", Destination: "y/../z", Type: "bind"})
		}, claim: func(o *api.OwningPlugins) { o.ClaimMount("c", "y/../z", "10-mounter") },
			want: `plugin 10-mounter: mount destination "y/../z"`},
		{name: "bad env name", adjust: func(a *api.ContainerAdjustment) { a.AddEnv("A=B", "c") },
			want: `environment variable "A=B"`},
		{name: "relative hook", adjust: func(a *api.ContainerAdjustment) {
			a.AddHooks(&api.Hooks{Prestart: []*api.Hook{{Path: "hook.sh"}}})
		}, want: `hook path "hook.sh"`},
		{name: "device rootless", rootless: true, adjust: func(a *api.ContainerAdjustment) {
			a.AddDevice(&api.LinuxDevice{Path: "/dev/kvm", Type: "c", Major: 10, Minor: 232})
		}, claim: func(o *api.OwningPlugins) { o.ClaimDevice("c", "/dev/kvm", "20-devices") },
			want: "plugin 20-devices: device /dev/kvm cannot be given rootless"},
		{name: "device rootful", adjust: func(a *api.ContainerAdjustment) {
			a.AddDevice(&api.LinuxDevice{Path: "/dev/kvm", Type: "c", Major: 10, Minor: 232})
		}},
		{name: "lower oom rootless", rootless: true, adjust: func(a *api.ContainerAdjustment) {
			a.SetLinuxOomScoreAdj(ptr(-500))
		}, claim: func(o *api.OwningPlugins) { o.ClaimOomScoreAdj("c", "30-oom") },
			want: "plugin 30-oom: oom_score_adj -500 is below crib's own 0"},
		{name: "higher hard rlimit rootless", rootless: true, adjust: func(a *api.ContainerAdjustment) {
			a.AddRlimit("RLIMIT_NOFILE", 4096, 1024)
		}, want: "rlimit RLIMIT_NOFILE hard limit 4096 is above crib's own 1024"},
		{name: "lower hard rlimit rootless", rootless: true, adjust: func(a *api.ContainerAdjustment) {
			a.AddRlimit("RLIMIT_NOFILE", 512, 256)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			adj := &api.ContainerAdjustment{}
			tc.adjust(adj)
			owners := api.NewOwningPlugins()
			if tc.claim != nil {
				tc.claim(owners)
			}
			req := &api.ValidateContainerAdjustmentRequest{Container: &api.Container{Id: "c"}, Adjust: adj, Owners: owners}
			err := validateAdjustment(req, tc.rootless, host)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// Rootless, the device cgroup is not crib's to program: a plugin's
// device keeps its node but loses its allow rule, as CRI devices do.
func TestAdjustRootlessDropsDeviceRules(t *testing.T) {
	for _, rootless := range []bool{false, true} {
		spec := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{CgroupsPath: "/pods/c"}}
		adj := &api.ContainerAdjustment{}
		adj.AddDevice(&api.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229})
		if err := adjust(spec, adj, rootless); err != nil {
			t.Fatal(err)
		}
		if len(spec.Linux.Devices) != 1 || spec.Linux.Devices[0].Path != "/dev/fuse" {
			t.Fatalf("rootless=%v: devices %v", rootless, spec.Linux.Devices)
		}
		rules := 0
		if spec.Linux.Resources != nil {
			rules = len(spec.Linux.Resources.Devices)
		}
		if rootless != (rules == 0) {
			t.Fatalf("rootless=%v: %d device rules", rootless, rules)
		}
	}
}

// Rootless without a cgroup, a plugin's limits are dropped as crib drops
// the CRI's: the runtime could not apply them.
func TestAdjustUnconfinedDropsLimits(t *testing.T) {
	for _, cg := range []string{"", "/pods/c"} {
		spec := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{CgroupsPath: cg}}
		adj := &api.ContainerAdjustment{}
		adj.SetLinuxMemoryLimit(1 << 30)
		if err := adjust(spec, adj, true); err != nil {
			t.Fatal(err)
		}
		limited := spec.Linux.Resources != nil && spec.Linux.Resources.Memory != nil && spec.Linux.Resources.Memory.Limit != nil
		if limited != (cg != "") {
			t.Fatalf("cgroup %q: memory limit in the spec = %v", cg, limited)
		}
	}
}
