package rootless

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/config"
)

// Every field crosses the environment and comes back the same, and
// nothing of an earlier handoff in the base environment survives.
func TestHandoffRoundTrip(t *testing.T) {
	zero := 0
	cases := []struct {
		name string
		h    Handoff
	}{
		{"empty", Handoff{}},
		{"child", Handoff{Child: true, ParentPID: 42, Config: &config.Config{Root: "/r", RunRoot: "/rr"}, HostPortStart: &zero, ListenFD: fdActivated}},
		{"node daemon", Handoff{Child: true, NodeNamespaces: true, NodeStage: "daemon:5:6"}},
		{"guest", Handoff{Guest: true, Config: &config.Config{Listen: "/s"}, InputFD: 7, NodeStage: "exec:9"}},
		{"host side", Handoff{Config: &config.Config{Root: "/r"}, ListenFD: 9, Parent: &ParentHandoff{
			Daemon: "/usr/bin/crib", Args: []string{"serve", "--root", "/r"}, LockFDs: []int{5, 6},
			Holder:       Holder{PID: 10, StartTime: 11, Outbound: "slirp4netns", HelperPID: 12, HelperTime: 13},
			NotifySocket: "@sd", Version: "1.0"}}},
	}
	base := []string{"PATH=/bin", "_CRIB_STAGE=userns", "_CRIB_PARENT_PID=1", "_CRIB_IMAGE_INPUT_FD=3", "HOME=/h"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, err := c.h.environ(base)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(env, "PATH=/bin") || !slices.Contains(env, "HOME=/h") {
				t.Errorf("the base environment was not kept: %q", env)
			}
			got, err := decodeHandoff(env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.h) {
				t.Errorf("decoded %+v, want %+v (environment %q)", got, c.h, env)
			}
		})
	}
}

func TestDecodeHandoffMalformed(t *testing.T) {
	for _, kv := range []string{"_CRIB_PARENT_PID=x", "_CRIB_CONFIG={", "_CRIB_LISTEN_FD=", "_CRIB_HOST_PORT_START=-", "_CRIB_HOSTSIDE={"} {
		h, err := decodeHandoff([]string{kv, "_CRIB_STAGE=userns"})
		if err == nil || !strings.Contains(err.Error(), strings.Split(kv, "=")[0]) {
			t.Errorf("%s: error %v, want one naming the variable", kv, err)
		}
		if !h.Child {
			t.Errorf("%s: the well-formed variables were not decoded", kv)
		}
	}
}
