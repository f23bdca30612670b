package runtime

import (
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestContainerCapabilities(t *testing.T) {
	small := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_ADMIN"}
	tests := []struct {
		name          string
		req           *runtimeapi.Capability
		privileged    bool
		bounding      []string
		want, ambient []string
	}{
		{"defaults the host lacks are left out", nil, false, small,
			[]string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}, nil},
		{"add and drop, any spelling", &runtimeapi.Capability{AddCapabilities: []string{"net_admin"}, DropCapabilities: []string{"CAP_KILL"}}, false, small,
			[]string{"CAP_CHOWN", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}, nil},
		{"a drop wins over an add of the same", &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}, DropCapabilities: []string{"SYS_ADMIN"}}, false, small,
			[]string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}, nil},
		{"add ALL is the bounding set", &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}, false, small, small, nil},
		{"drop ALL beats add ALL, named adds stay", &runtimeapi.Capability{AddCapabilities: []string{"ALL", "KILL"}, DropCapabilities: []string{"all"}}, false, small,
			[]string{"CAP_KILL"}, nil},
		{"ambient goes into every set", &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}}, false, small,
			[]string{"CAP_NET_BIND_SERVICE"}, []string{"CAP_NET_BIND_SERVICE"}},
		{"a drop removes an ambient capability too", &runtimeapi.Capability{AddAmbientCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"NET_ADMIN"}}, false, small,
			[]string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}, nil},
		{"privileged ignores the request", &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}, true, small, small, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := containerCapabilities(tt.req, tt.privileged, tt.bounding)
			if err != nil {
				t.Fatal(err)
			}
			for set, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
				if !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
					t.Errorf("%s = %v, want %v", set, got, tt.want)
				}
			}
			for set, got := range map[string][]string{"ambient": c.Ambient, "inheritable": c.Inheritable} {
				if !slices.Equal(got, tt.ambient) && !(len(got) == 0 && len(tt.ambient) == 0) {
					t.Errorf("%s = %v, want %v", set, got, tt.ambient)
				}
			}
		})
	}
}
