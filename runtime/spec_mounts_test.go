package runtime

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestMountPropagationPicksTheHoldingMount: the deepest mount point above
// the path decides, and of stacked mounts the last one listed (the top).
func TestMountPropagationPicksTheHoldingMount(t *testing.T) {
	table := []mountEntry{
		{Mountpoint: "/", Optional: "shared:1"},
		{Mountpoint: "/var", Optional: ""},
		{Mountpoint: "/var/lib", Optional: "master:4"},
		{Mountpoint: "/var/lib", Optional: "shared:9 master:4"},
		{Mountpoint: "/var/libx", Optional: ""},
	}
	b := &specBuilder{probes: hostProbes{mounts: func() ([]mountEntry, error) { return table, nil }}}
	for _, tt := range []struct {
		path, mountpoint string
		shared, slave    bool
	}{
		{"/etc", "/", true, false},
		{"/var/log", "/var", false, false},
		{"/var/lib/kubelet", "/var/lib", true, true},
		{"/var/lib", "/var/lib", true, true},
		{"/var/libx/a", "/var/libx", false, false},
	} {
		mp, shared, slave, err := b.mountPropagation(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if mp != tt.mountpoint || shared != tt.shared || slave != tt.slave {
			t.Errorf("%s: got %s shared=%v slave=%v, want %s %v %v", tt.path, mp, shared, slave, tt.mountpoint, tt.shared, tt.slave)
		}
	}
}

// TestSELinuxRelabel: with SELinux on, mounts that ask are relabelled with
// the pod's mount label (image volumes are read-only and never are); with
// it off nothing is.
func TestSELinuxRelabel(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		in, td := validInput(t)
		in.Host.SELinuxEnabled = enabled
		in.MountLabel = "system_u:object_r:container_file_t:s0:c1,c2"
		in.ImageVolumes = map[string]string{"img": td + "/host/image"}
		in.Config.Mounts = []*runtimeapi.Mount{
			{ContainerPath: "/a", HostPath: td + "/host/vol", SelinuxRelabel: true},
			{ContainerPath: "/b", HostPath: td + "/host/shared"},
			{ContainerPath: "/c", Image: &runtimeapi.ImageSpec{Image: "img"}, SelinuxRelabel: true},
		}
		var relabelled []string
		probes := fakeProbes(nil, nil, nil)
		probes.relabel = func(p, l string) error {
			if l != in.MountLabel {
				t.Errorf("relabel %s with %q", p, l)
			}
			relabelled = append(relabelled, p)
			return nil
		}
		if _, err := generateSpec(in, probes); err != nil {
			t.Fatal(err)
		}
		want := 0
		if enabled {
			want = 1
		}
		if len(relabelled) != want || (want == 1 && relabelled[0] != td+"/host/vol") {
			t.Errorf("SELinux %v: relabelled %v", enabled, relabelled)
		}
	}
}
