package doctor

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/golden"
)

// thisMachineAsUser is the project's test machine seen by a fresh user:
// hybrid cgroup v1 with hugetlb on cgroup2, no systemd, /dev/net/tun and
// /dev/fuse 0600, no /etc/subuid entry, and a shell from su (no
// XDG_RUNTIME_DIR).
func thisMachineAsUser(f *fixture) {
	f.cgroupV1Hybrid("hugetlb\n")
	f.remove("/run/systemd/system")
	f.remove("/var/lib/systemd/linger")
	f.chmod("/dev/net/tun", 0o600)
	f.chmod("/dev/fuse", 0o600)
	f.write("/etc/subuid", "bob:100000:65536\n", 0o644)
	f.write("/etc/subgid", "bob:100000:65536\n", 0o644)
	f.h.Getenv = mapEnv(nil)
	f.remove("/run/user/1000")
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*fixture)
	}{
		{"healthy", nil},
		{"this-machine-rootless", thisMachineAsUser},
		{"this-machine-rootful", func(f *fixture) { thisMachineAsUser(f); asRoot(f) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			rep := f.run()
			var text, js bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if err := rep.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			for _, out := range []struct {
				file string
				got  []byte
			}{{tt.name + ".txt", text.Bytes()}, {tt.name + ".json", js.Bytes()}} {
				if strings.Contains(string(out.got), f.root) {
					t.Errorf("%s leaks the fixture root %s", out.file, f.root)
				}
				golden.Check(t, filepath.Join("testdata", out.file), out.got)
			}
		})
	}
}
