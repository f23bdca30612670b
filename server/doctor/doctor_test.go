package doctor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idmap"
)

func TestHealthyRootlessHost(t *testing.T) {
	f := newFixture(t)
	rep := f.run()
	for _, c := range rep.Checks {
		if c.Status != OK {
			t.Errorf("%s: status %s, detail %q, want ok", c.ID, c.Status, c.Detail)
		}
	}
	if hf := rep.HardFailures(); len(hf) != 0 {
		t.Errorf("HardFailures = %v, want none", hf)
	}
	if err := rep.Err(); err != nil {
		t.Errorf("Err = %v, want nil", err)
	}
	want := Features{
		CgroupVersion:        2,
		CgroupPath:           "/user.slice/user-1000.slice/user@1000.service/app.slice/crib.service",
		CgroupWritable:       map[string]bool{"cpuset": true, "cpu": true, "io": true, "memory": true, "pids": true},
		OverlayInUserNS:      true,
		FuseOverlayfs:        true,
		StorageDriver:        "overlay",
		OCIRuntimes:          map[string]string{"runc": "/usr/sbin/runc", "crun": "/usr/bin/crun"},
		OCIRuntimeRefused:    map[string]string{},
		DefaultRuntime:       "crun",
		OCIRuntimeVersions:   map[string]string{"runc": "runc version 1.0", "crun": "crun version 1.0"},
		DefaultRuntimeReason: "auto: crun, the faster runtime, works here",
		Conmon:               "/usr/bin/conmon",
		Outbound:             []string{"slirp4netns", "pasta"},
		CNIPluginDir:         "/usr/lib/cni",
		Subuid:               []idmap.Range{{Start: 100000, Count: 65536}},
		Subgid:               []idmap.Range{{Start: 100000, Count: 65536}},
		Programs: map[string]string{
			"newuidmap": "/usr/bin/newuidmap", "newgidmap": "/usr/bin/newgidmap",
			"runc": "/usr/sbin/runc", "crun": "/usr/bin/crun", "conmon": "/usr/bin/conmon",
			"fuse-overlayfs": "/usr/bin/fuse-overlayfs", "slirp4netns": "/usr/bin/slirp4netns", "pasta": "/usr/bin/pasta",
		},
	}
	if !reflect.DeepEqual(rep.Features, want) {
		t.Errorf("Features =\n%+v\nwant\n%+v", rep.Features, want)
	}
}

// checkCase changes the healthy fixture and states what one check reports.
type checkCase struct {
	name   string
	setup  func(f *fixture)
	id     string
	status Status
	hard   bool
	detail string // substring of Detail
	fix    string // exact Fix ("" = none expected)
	// features, when set, inspects the report's Features.
	features func(t *testing.T, got Features)
}

func runCheckCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			rep := f.run()
			c, ok := rep.Check(tc.id)
			if !ok {
				t.Fatalf("no check %s", tc.id)
			}
			if c.Status != tc.status || c.Hard != tc.hard {
				t.Errorf("status %s hard %v, want %s hard %v (detail %q)", c.Status, c.Hard, tc.status, tc.hard, c.Detail)
			}
			if !strings.Contains(c.Detail, tc.detail) {
				t.Errorf("detail %q, want it to contain %q", c.Detail, tc.detail)
			}
			if c.Fix != tc.fix {
				t.Errorf("fix\n got %q\nwant %q", c.Fix, tc.fix)
			}
			if tc.features != nil {
				tc.features(t, rep.Features)
			}
		})
	}
}

// dropUnified makes the hybrid fixture a pure v1 host.
func dropUnified(f *fixture) {
	data, _ := os.ReadFile(f.abs("/proc/self/mountinfo"))
	var keep []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.Contains(l, "cgroup2") {
			keep = append(keep, l)
		}
	}
	f.write("/proc/self/mountinfo", strings.Join(keep, "\n"), 0o444)
}

func asRoot(f *fixture) { f.h.UID, f.h.GID, f.h.User = 0, 0, "root" }

func TestSubids(t *testing.T) {
	runCheckCases(t, []checkCase{
		{name: "enough", id: IDSubuid, status: OK, hard: true, detail: "alice: 100000-165535 (65536 ids)"},
		{name: "by uid, two ranges", id: IDSubgid, status: OK, hard: true, detail: "alice: 100000-132767, 200000-232767 (65536 ids)",
			setup: func(f *fixture) { f.write("/etc/subgid", "1000:100000:32768\nalice:200000:32768\n", 0o644) }},
		{name: "file missing", id: IDSubuid, status: Fail, hard: true, detail: "alice has no subordinate uids in /etc/subuid",
			setup: func(f *fixture) { f.remove("/etc/subuid") },
			fix:   "sudo usermod --add-subuids 100000-165535 alice"},
		{name: "no entry, next free range", id: IDSubuid, status: Fail, hard: true, detail: "no subordinate uids",
			setup: func(f *fixture) { f.write("/etc/subuid", "bob:100000:65536\n", 0o644) },
			fix:   "sudo usermod --add-subuids 165536-231071 alice"},
		{name: "too few", id: IDSubgid, status: Fail, hard: true, detail: "alice has 1000 subordinate gids in /etc/subgid, need at least 65536",
			setup: func(f *fixture) { f.write("/etc/subgid", "alice:100000:1000\n", 0o644) },
			fix:   "sudo usermod --add-subgids 101000-166535 alice"},
		{name: "malformed line of the user", id: IDSubuid, status: Fail, hard: true, detail: "line 1",
			setup: func(f *fixture) { f.write("/etc/subuid", "alice:100000\n", 0o644) },
			fix:   "sudoedit /etc/subuid"},
		{name: "as root", id: IDSubuid, status: OK, hard: false, detail: "not needed as root",
			setup: func(f *fixture) { asRoot(f); f.remove("/etc/subuid") }},
	})
}

// fileCaps encodes a revision-2 security.capability value.
func fileCaps(permitted uint64, effective bool) []byte {
	b := make([]byte, 20)
	magic := uint32(vfsCapRevision2)
	if effective {
		magic |= 1
	}
	binary.LittleEndian.PutUint32(b, magic)
	binary.LittleEndian.PutUint32(b[4:], uint32(permitted))
	binary.LittleEndian.PutUint32(b[12:], uint32(permitted>>32))
	return b
}

func setCaps(f *fixture, p string, value []byte) {
	f.t.Helper()
	if err := unix.Setxattr(f.abs(p), "security.capability", value, 0); err != nil {
		f.t.Skipf("cannot set file capabilities in the fixture's filesystem: %v", err)
	}
}

func TestIDMappers(t *testing.T) {
	runCheckCases(t, []checkCase{
		{name: "setuid root", id: IDNewuidmap, status: OK, hard: true, detail: "/usr/bin/newuidmap: setuid root"},
		{name: "missing", id: IDNewuidmap, status: Fail, hard: true, detail: "newuidmap is not installed",
			setup: func(f *fixture) { f.remove("/usr/bin/newuidmap") },
			fix:   "sudo apt-get install uidmap"},
		{name: "missing on Fedora", id: IDNewgidmap, status: Fail, hard: true, detail: "not installed",
			setup: func(f *fixture) {
				f.remove("/usr/bin/newgidmap")
				f.write("/etc/os-release", "ID=fedora\n", 0o644)
			},
			fix: "sudo dnf install shadow-utils"},
		{name: "neither setuid nor caps", id: IDNewuidmap, status: Fail, hard: true, detail: "neither setuid root nor has the cap_setuid file capability",
			setup: func(f *fixture) { f.chmod("/usr/bin/newuidmap", 0o755) },
			fix:   "sudo chown root:root /usr/bin/newuidmap && sudo chmod 4755 /usr/bin/newuidmap"},
		{name: "setuid but not root's", id: IDNewuidmap, status: Fail, hard: true, detail: "neither setuid root",
			setup: func(f *fixture) { f.chown("/usr/bin/newuidmap"); f.chmod("/usr/bin/newuidmap", 0o4755) },
			fix:   "sudo chown root:root /usr/bin/newuidmap && sudo chmod 4755 /usr/bin/newuidmap"},
		{name: "file capability cap_setuid", id: IDNewuidmap, status: OK, hard: true, detail: "file capability cap_setuid",
			setup: func(f *fixture) {
				f.chmod("/usr/bin/newuidmap", 0o755)
				setCaps(f, "/usr/bin/newuidmap", fileCaps(1<<capSetuid, true))
			}},
		{name: "newgidmap with cap_setuid only", id: IDNewgidmap, status: Fail, hard: true, detail: "file capabilities lack capability 6",
			setup: func(f *fixture) {
				f.chmod("/usr/bin/newgidmap", 0o755)
				setCaps(f, "/usr/bin/newgidmap", fileCaps(1<<capSetuid, true))
			},
			fix: "sudo chown root:root /usr/bin/newgidmap && sudo chmod 4755 /usr/bin/newgidmap"},
		{name: "not executable by the user", id: IDNewgidmap, status: Fail, hard: true, detail: "not executable by alice",
			setup: func(f *fixture) { f.chmod("/usr/bin/newgidmap", 0o4750) },
			fix:   "sudo chmod 4755 /usr/bin/newgidmap"},
		{name: "as root", id: IDNewuidmap, status: OK, hard: false, detail: "not needed as root",
			setup: func(f *fixture) { asRoot(f); f.remove("/usr/bin/newuidmap") }},
	})
}

func TestParseFileCaps(t *testing.T) {
	rev1 := make([]byte, 12)
	binary.LittleEndian.PutUint32(rev1, vfsCapRevision1)
	binary.LittleEndian.PutUint32(rev1[4:], 1<<capSetgid)
	rev3 := append(fileCaps(1<<40|1<<capSetuid, true), 0, 0, 0, 0)
	rev3[3] = 0x03
	tests := []struct {
		name    string
		value   []byte
		want    uint64
		wantErr bool
	}{
		{"revision 1", rev1, 1 << capSetgid, false},
		{"revision 2, high word", fileCaps(1<<40|1<<capSetuid, false), 1<<40 | 1<<capSetuid, false},
		{"revision 3 with root id", rev3, 1<<40 | 1<<capSetuid, false},
		{"too short", []byte{1, 2}, 0, true},
		{"wrong length for revision", fileCaps(1, true)[:12], 0, true},
		{"unknown revision", []byte{0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFileCaps(tt.value)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("permitted = %#x, want %#x", got, tt.want)
			}
		})
	}
}

func TestUserNamespaces(t *testing.T) {
	runCheckCases(t, []checkCase{
		{name: "allowed", id: IDUserNS, status: OK, hard: true, detail: "user.max_user_namespaces = 28633"},
		{name: "zero", id: IDUserNS, status: Fail, hard: true, detail: "user.max_user_namespaces is 0",
			setup: func(f *fixture) { f.write("/proc/sys/user/max_user_namespaces", "0\n", 0o644) },
			fix:   "sudo sysctl -w user.max_user_namespaces=28633"},
		{name: "kernel without user namespaces", id: IDUserNS, status: Fail, hard: true, detail: "built without user namespaces",
			setup: func(f *fixture) { f.remove("/proc/sys/user/max_user_namespaces") }},
		{name: "old Debian switch off", id: IDUserNS, status: Fail, hard: true, detail: "kernel.unprivileged_userns_clone is 0",
			setup: func(f *fixture) { f.write("/proc/sys/kernel/unprivileged_userns_clone", "0\n", 0o644) },
			fix:   "sudo sysctl -w kernel.unprivileged_userns_clone=1"},
		{name: "old Debian switch on", id: IDUserNS, status: OK, hard: true, detail: "28633",
			setup: func(f *fixture) { f.write("/proc/sys/kernel/unprivileged_userns_clone", "1\n", 0o644) }},
		{name: "zero as root warns", id: IDUserNS, status: Warn, hard: false, detail: "only affects pods that ask for a user namespace",
			setup: func(f *fixture) { asRoot(f); f.write("/proc/sys/user/max_user_namespaces", "0\n", 0o644) },
			fix:   "sysctl -w user.max_user_namespaces=28633"},

		{name: "apparmor sysctl absent", id: IDAppArmorUserNS, status: OK, hard: true, detail: "absent"},
		{name: "apparmor restriction off", id: IDAppArmorUserNS, status: OK, hard: true, detail: "= 0",
			setup: func(f *fixture) { f.write("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "0\n", 0o644) }},
		{name: "apparmor restriction on (Ubuntu 24.04)", id: IDAppArmorUserNS, status: Fail, hard: true, detail: "AppArmor denies",
			setup: func(f *fixture) {
				f.write("/etc/os-release", "ID=ubuntu\nID_LIKE=debian\n", 0o644)
				f.write("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1\n", 0o644)
			},
			fix: "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"},
		{name: "apparmor restriction as root", id: IDAppArmorUserNS, status: OK, hard: false, detail: "does not apply to root",
			setup: func(f *fixture) {
				asRoot(f)
				f.write("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1\n", 0o644)
			}},
	})
}

func TestOCIRuntimes(t *testing.T) {
	runCheckCases(t, []checkCase{
		{name: "runc off PATH in /usr/sbin", id: IDRunc, status: OK, detail: "/usr/sbin/runc (runc version 1.0)"},
		{name: "runc missing", id: IDRunc, status: Warn, detail: "runc is not installed",
			setup: func(f *fixture) { f.remove("/usr/sbin/runc") },
			fix:   "sudo apt-get install runc",
			features: func(t *testing.T, got Features) {
				if got.DefaultRuntime != "crun" {
					t.Errorf("DefaultRuntime = %q, want crun", got.DefaultRuntime)
				}
			}},
		{name: "runc does not run", id: IDRunc, status: Warn, detail: "exec format error",
			setup: func(f *fixture) { f.versionErr["/usr/sbin/runc"] = errors.New("exec format error") },
			fix:   "sudo apt-get install runc",
			features: func(t *testing.T, got Features) {
				if _, ok := got.OCIRuntimes["runc"]; ok || got.OCIRuntimeRefused["runc"] == "" {
					t.Errorf("runc in OCIRuntimes %v / refused %v, want refused only", got.OCIRuntimes, got.OCIRuntimeRefused)
				}
			}},
		{name: "runc not executable", id: IDRunc, status: Warn, detail: "not executable by alice",
			setup: func(f *fixture) { f.chmod("/usr/sbin/runc", 0o700) },
			fix:   "sudo chmod 0755 /usr/sbin/runc"},
		{name: "configured runc path missing, another found", id: IDRunc, status: Warn, detail: "/opt/runc does not exist",
			setup: func(f *fixture) { f.cfg.Runtime.RuncPath = "/opt/runc" },
			fix:   "crib serve --runc-path=/usr/sbin/runc"},
		{name: "crun on a hybrid host with cgroup2 controllers, rootless: the view hides it", id: IDCrun, status: OK,
			detail: "hybrid cgroup host: crib hides cgroup2 at /sys/fs/cgroup/unified in its own mount namespace",
			setup:  func(f *fixture) { f.cgroupV1Hybrid("hugetlb\n") },
			features: func(t *testing.T, got Features) {
				if got.OCIRuntimes["crun"] == "" || got.DefaultRuntime != "crun" {
					t.Errorf("OCIRuntimes %v default %q, want crun usable and the default", got.OCIRuntimes, got.DefaultRuntime)
				}
				if !strings.Contains(got.DefaultRuntimeReason, "hides cgroup2") {
					t.Errorf("DefaultRuntimeReason = %q, want the view named", got.DefaultRuntimeReason)
				}
			}},
		{name: "crun on a hybrid host with cgroup2 controllers, rootful", id: IDCrun, status: Warn, detail: "crun refuses a hybrid cgroup host",
			setup: func(f *fixture) { f.cgroupV1Hybrid("hugetlb\n"); asRoot(f) },
			features: func(t *testing.T, got Features) {
				if _, ok := got.OCIRuntimes["crun"]; ok {
					t.Errorf("crun usable on a hybrid host as root: %v", got.OCIRuntimes)
				}
				if !strings.Contains(got.OCIRuntimeRefused["crun"], "host's mount namespace") {
					t.Errorf("OCIRuntimeRefused = %v, want crun refused for the host's view", got.OCIRuntimeRefused)
				}
				if got.DefaultRuntime != "runc" || !strings.Contains(got.DefaultRuntimeReason, "crun cannot be used") {
					t.Errorf("default %q (%q), want runc because crun cannot be used", got.DefaultRuntime, got.DefaultRuntimeReason)
				}
			}},
		{name: "crun on a hybrid host with an empty cgroup2", id: IDCrun, status: OK, detail: "/usr/bin/crun (crun version 1.0): hybrid cgroup host: crib hides",
			setup: func(f *fixture) { f.cgroupV1Hybrid("") }},
		{name: "crun rootful on pure v1, crib's memory cgroup below the root", id: IDCrun, status: Warn,
			detail: "crib's memory cgroup (/process_api/x) is not at its root; rootful crib runs in the host's mount namespace",
			setup:  func(f *fixture) { f.cgroupV1Hybrid(""); dropUnified(f); asRoot(f) }},
		{name: "crun rootful on pure v1, crib's memory cgroup below the root, cgroup manager none", id: IDCrun, status: OK,
			detail: "/usr/bin/crun (crun version 1.0)",
			setup:  func(f *fixture) { f.cgroupV1Hybrid(""); dropUnified(f); asRoot(f); f.cfg.Cgroup.Manager = "none" }},
		{name: "crun rootless on pure v1, crib's memory cgroup below the root: the view roots it", id: IDCrun, status: OK,
			detail: "crib's mount namespace shows each v1 hierarchy from crib's own cgroup",
			setup:  func(f *fixture) { f.cgroupV1Hybrid(""); dropUnified(f) }},
		{name: "crun rootful on pure v1 at every root", id: IDCrun, status: OK, detail: "/usr/bin/crun (crun version 1.0)",
			setup: func(f *fixture) {
				f.cgroupV1Hybrid("")
				dropUnified(f)
				f.write("/proc/self/cgroup", "4:memory:/\n1:cpu:/\n0::/\n", 0o444)
				asRoot(f)
			}},

		{name: "default auto", id: IDOCIRuntime, status: OK, hard: true, detail: "usable: crun, runc; default: crun (auto: crun, the faster runtime, works here)"},
		{name: "default auto without crun", id: IDOCIRuntime, status: OK, hard: true, detail: "usable: runc; default: runc (auto: crun is not installed)",
			setup: func(f *fixture) { f.remove("/usr/bin/crun") }},
		{name: "none usable", id: IDOCIRuntime, status: Fail, hard: true, detail: "neither runc nor crun",
			setup: func(f *fixture) { f.remove("/usr/sbin/runc"); f.remove("/usr/bin/crun") },
			fix:   "sudo apt-get install runc"},
		{name: "none usable as root is still hard", id: IDOCIRuntime, status: Fail, hard: true, detail: "neither runc nor crun",
			setup: func(f *fixture) { asRoot(f); f.remove("/usr/sbin/runc"); f.remove("/usr/bin/crun") },
			fix:   "apt-get install runc"},
		{name: "configured default refused", id: IDOCIRuntime, status: Fail, hard: true, detail: `default runtime "crun" cannot be used`,
			setup: func(f *fixture) { f.cgroupV1Hybrid("hugetlb\n"); asRoot(f); f.cfg.Runtime.DefaultHandler = "crun" },
			fix:   `crib serve --default-runtime=runc (or set runtime.default_handler = "runc" in crib.toml)`},
		{name: "configured default usable", id: IDOCIRuntime, status: OK, hard: true, detail: "default: crun (configured)",
			setup: func(f *fixture) { f.cfg.Runtime.DefaultHandler = "crun" }},

		{name: "conmon", id: IDConmon, status: OK, hard: true, detail: "/usr/bin/conmon (conmon version 1.0)"},
		{name: "conmon in podman's libexec", id: IDConmon, status: OK, hard: true, detail: "/usr/libexec/podman/conmon",
			setup: func(f *fixture) { f.remove("/usr/bin/conmon"); f.write("/usr/libexec/podman/conmon", "", 0o755) }},
		{name: "conmon missing", id: IDConmon, status: Fail, hard: true, detail: "crib cannot start containers without it",
			setup: func(f *fixture) { f.remove("/usr/bin/conmon") },
			fix:   "sudo apt-get install conmon"},
	})
}

func TestStorage(t *testing.T) {
	driver := func(want string) func(*testing.T, Features) {
		return func(t *testing.T, got Features) {
			if got.StorageDriver != want {
				t.Errorf("StorageDriver = %q, want %q", got.StorageDriver, want)
			}
		}
	}
	noOverlay := func(f *fixture) { f.overlayErr = errors.New("mount: permission denied") }
	runCheckCases(t, []checkCase{
		{name: "native overlay", id: IDOverlay, status: OK, detail: "inside a user namespace", features: driver("overlay")},
		{name: "native overlay fails", id: IDOverlay, status: Warn, detail: "mount: permission denied",
			setup: noOverlay, features: driver("fuse-overlayfs")},
		{name: "configured overlay fails", id: IDOverlay, status: Warn, detail: "configured storage driver overlay will fail",
			setup: func(f *fixture) { noOverlay(f); f.cfg.Storage.Driver = "overlay" },
			fix:   "crib serve --storage-driver=auto"},
		{name: "probe missing is not success", id: IDOverlay, status: Warn, detail: "not probed",
			setup: func(f *fixture) { f.h.Probes.OverlayInUserNS = nil }, features: driver("fuse-overlayfs")},
		{name: "vfs configured", id: IDOverlay, status: OK, detail: "storage driver vfs is configured",
			setup: func(f *fixture) { f.cfg.Storage.Driver = "vfs" }, features: driver("vfs")},

		{name: "fuse-overlayfs usable", id: IDFuseOverlayfs, status: OK, detail: "/usr/bin/fuse-overlayfs"},
		{name: "/dev/fuse 0600 with native overlay", id: IDFuseOverlayfs, status: OK, detail: "not needed with storage driver overlay",
			setup: func(f *fixture) { f.chmod("/dev/fuse", 0o600) }},
		{name: "/dev/fuse 0600 without native overlay", id: IDFuseOverlayfs, status: Warn, detail: "storage falls back to vfs",
			setup: func(f *fixture) { noOverlay(f); f.chmod("/dev/fuse", 0o600) },
			fix:   "sudo chmod 0666 /dev/fuse", features: driver("vfs")},
		{name: "nothing for fuse", id: IDFuseOverlayfs, status: Warn, detail: "fuse-overlayfs is not installed",
			setup: func(f *fixture) { noOverlay(f); f.remove("/usr/bin/fuse-overlayfs"); f.remove("/dev/fuse") },
			fix:   "sudo apt-get install fuse-overlayfs && sudo modprobe fuse", features: driver("vfs")},
		{name: "fuse-overlayfs configured but unusable", id: IDFuseOverlayfs, status: Warn, detail: "configured storage driver fuse-overlayfs will fail",
			setup: func(f *fixture) { f.cfg.Storage.Driver = "fuse-overlayfs"; f.chmod("/dev/fuse", 0o600) },
			fix:   "sudo chmod 0666 /dev/fuse", features: driver("fuse-overlayfs")},
		{name: "/dev/fuse group-accessible", id: IDFuseOverlayfs, status: OK, detail: "/usr/bin/fuse-overlayfs",
			setup: func(f *fixture) {
				noOverlay(f)
				f.h.Groups = []int{44}
				if err := chownGroup(f.abs("/dev/fuse"), 44); err != nil {
					t.Fatal(err)
				}
				f.chmod("/dev/fuse", 0o660)
			}, features: driver("fuse-overlayfs")},
		{name: "as root /dev/fuse mode does not matter", id: IDFuseOverlayfs, status: OK, detail: "/usr/bin/fuse-overlayfs",
			setup: func(f *fixture) { asRoot(f); f.chmod("/dev/fuse", 0o600) }},
	})
}

func chownGroup(p string, gid int) error { return unix.Lchown(p, 0, gid) }

func TestCgroupV2(t *testing.T) {
	const own = "/user.slice/user-1000.slice/session-1.scope"
	notDelegated := func(f *fixture) { f.cgroupV2(own, "cpu memory pids", false) }
	systemdFix := "sudo mkdir -p /etc/systemd/system/user@.service.d && " +
		`printf '[Service]\nDelegate=cpu cpuset io memory pids\n' | sudo tee /etc/systemd/system/user@.service.d/delegate.conf && ` +
		"sudo systemctl daemon-reload"
	runCheckCases(t, []checkCase{
		{name: "delegated", id: IDCgroup, status: OK, detail: "delegated to alice with controllers cpuset cpu io memory pids"},
		{name: "session scope, user manager not delegated", id: IDCgroup, status: Warn, detail: own + " (crib's cgroup) is not delegated to alice",
			setup: notDelegated, fix: systemdFix,
			features: func(t *testing.T, got Features) {
				if got.CgroupWritable["memory"] {
					t.Errorf("memory writable in a cgroup root owns: %v", got.CgroupWritable)
				}
			}},
		{name: "session scope, user manager delegated", id: IDCgroup, status: Warn, detail: "systemd delegated",
			setup: func(f *fixture) {
				notDelegated(f)
				f.cgroupDir("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service", "cpu memory pids", true)
			},
			fix: "systemd-run --user --scope -p Delegate=yes crib serve"},
		{name: "no systemd", id: IDCgroup, status: Warn, detail: "start crib from the shell moved into /sys/fs/cgroup/crib-alice",
			setup: func(f *fixture) { notDelegated(f); f.remove("/run/systemd/system") },
			fix: "sudo mkdir -p /sys/fs/cgroup/crib-alice && echo '+cpu +memory +pids' | sudo tee /sys/fs/cgroup/cgroup.subtree_control && " +
				"sudo chown -R alice /sys/fs/cgroup/crib-alice && echo $$ | sudo tee /sys/fs/cgroup/crib-alice/cgroup.procs"},
		{name: "delegated without memory", id: IDCgroup, status: Warn, detail: "lacks the memory controller",
			setup: func(f *fixture) {
				f.cgroupV2("/user.slice/user-1000.slice/user@1000.service/app.slice/crib.service", "cpu pids", true)
			},
			fix: systemdFix},
		{name: "delegated without memory, no systemd", id: IDCgroup, status: Warn, detail: "lacks the memory controller",
			setup: func(f *fixture) { f.remove("/run/systemd/system"); f.cgroupV2("/crib", "cpu pids", true) },
			fix:   "echo '+memory' | sudo tee /sys/fs/cgroup/cgroup.subtree_control"},
		{name: "configured parent delegated", id: IDCgroup, status: OK, detail: "/pods is delegated",
			setup: func(f *fixture) {
				notDelegated(f)
				f.cgroupDir("/sys/fs/cgroup/pods", "cpu memory pids", true)
				f.cfg.Cgroup.Parent = "pods"
			},
			features: func(t *testing.T, got Features) {
				if got.CgroupPath != "/pods" {
					t.Errorf("CgroupPath = %q, want /pods", got.CgroupPath)
				}
			}},
		{name: "manager none", id: IDCgroup, status: OK, detail: "pods run unconfined",
			setup: func(f *fixture) { notDelegated(f); f.cfg.Cgroup.Manager = "none" }},
		{name: "no cgroup filesystem", id: IDCgroup, status: Warn, detail: "no cgroup filesystem",
			setup: func(f *fixture) { f.write("/proc/self/mountinfo", "", 0o444) },
			fix:   "sudo mount -t cgroup2 none /sys/fs/cgroup",
			features: func(t *testing.T, got Features) {
				if got.CgroupVersion != 0 {
					t.Errorf("CgroupVersion = %d, want 0", got.CgroupVersion)
				}
			}},
	})
}

func TestCgroupV1(t *testing.T) {
	dirs := []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory/process_api/x", "/sys/fs/cgroup/pids"}
	giveAll := func(f *fixture) {
		for _, d := range dirs {
			f.chown(d, d+"/cgroup.procs")
		}
	}
	runCheckCases(t, []checkCase{
		{name: "hybrid, nothing writable", id: IDCgroup, status: Warn,
			detail: "cgroup v1 (hybrid: cgroup2 at /sys/fs/cgroup/unified): no controller's cgroup is writable by alice: pods run unconfined",
			setup:  func(f *fixture) { f.cgroupV1Hybrid("hugetlb\n") },
			fix: "sudo mkdir -p /sys/fs/cgroup/cpu/crib-alice /sys/fs/cgroup/cpuacct/crib-alice /sys/fs/cgroup/memory/process_api/x/crib-alice /sys/fs/cgroup/pids/crib-alice" +
				" && sudo chown -R alice /sys/fs/cgroup/cpu/crib-alice /sys/fs/cgroup/cpuacct/crib-alice /sys/fs/cgroup/memory/process_api/x/crib-alice /sys/fs/cgroup/pids/crib-alice" +
				" && for d in /sys/fs/cgroup/cpu/crib-alice /sys/fs/cgroup/cpuacct/crib-alice /sys/fs/cgroup/memory/process_api/x/crib-alice /sys/fs/cgroup/pids/crib-alice; do echo $$ > $d/cgroup.procs; done",
			features: func(t *testing.T, got Features) {
				if got.CgroupVersion != 1 || !got.CgroupHybrid || got.CgroupPath != "/process_api/x" {
					t.Errorf("version %d hybrid %v path %q, want 1 true /process_api/x", got.CgroupVersion, got.CgroupHybrid, got.CgroupPath)
				}
			}},
		{name: "hybrid, all writable", id: IDCgroup, status: OK, detail: "writable by alice: cpu cpuacct memory pids",
			setup: func(f *fixture) { f.cgroupV1Hybrid("hugetlb\n"); giveAll(f) },
			features: func(t *testing.T, got Features) {
				want := map[string]bool{"cpu": true, "cpuacct": true, "memory": true, "pids": true}
				if !maps.Equal(got.CgroupWritable, want) {
					t.Errorf("CgroupWritable = %v, want %v", got.CgroupWritable, want)
				}
			}},
		{name: "memory only", id: IDCgroup, status: Warn, detail: "not writable by alice: cpu cpuacct pids",
			setup: func(f *fixture) {
				f.cgroupV1Hybrid("")
				f.chown("/sys/fs/cgroup/memory/process_api/x", "/sys/fs/cgroup/memory/process_api/x/cgroup.procs")
			},
			fix: "sudo mkdir -p /sys/fs/cgroup/cpu/crib-alice /sys/fs/cgroup/cpuacct/crib-alice /sys/fs/cgroup/pids/crib-alice" +
				" && sudo chown -R alice /sys/fs/cgroup/cpu/crib-alice /sys/fs/cgroup/cpuacct/crib-alice /sys/fs/cgroup/pids/crib-alice" +
				" && for d in /sys/fs/cgroup/cpu/crib-alice /sys/fs/cgroup/cpuacct/crib-alice /sys/fs/cgroup/pids/crib-alice; do echo $$ > $d/cgroup.procs; done"},
		{name: "configured parent", id: IDCgroup, status: Warn, detail: "no controller's cgroup is writable",
			setup: func(f *fixture) { f.cgroupV1Hybrid(""); f.cfg.Cgroup.Parent = "/crib" },
			fix: "sudo mkdir -p /sys/fs/cgroup/cpu/crib /sys/fs/cgroup/cpuacct/crib /sys/fs/cgroup/memory/crib /sys/fs/cgroup/pids/crib" +
				" && sudo chown -R alice /sys/fs/cgroup/cpu/crib /sys/fs/cgroup/cpuacct/crib /sys/fs/cgroup/memory/crib /sys/fs/cgroup/pids/crib"},
		{name: "configured parent made by cgroup-delegate.sh, memory below crib's own", id: IDCgroup, status: OK,
			detail: "writable by alice: cpu cpuacct memory pids",
			setup: func(f *fixture) {
				f.cgroupV1Hybrid("")
				f.cfg.Cgroup.Parent = "/crib-alice"
				for _, d := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory/process_api/x", "/sys/fs/cgroup/pids"} {
					f.mkdir(d+"/crib-alice", 0o755)
					f.write(d+"/crib-alice/cgroup.procs", "", 0o644)
					f.chown(d+"/crib-alice", d+"/crib-alice/cgroup.procs")
				}
			},
			features: func(t *testing.T, got Features) {
				if got.CgroupPath != "/process_api/x/crib-alice" {
					t.Errorf("CgroupPath = %q", got.CgroupPath)
				}
			}},
		{name: "as root", id: IDCgroup, status: OK, detail: "writable by root",
			setup: func(f *fixture) { f.cgroupV1Hybrid("hugetlb\n"); asRoot(f) }},
	})
}

func TestOutbound(t *testing.T) {
	outbound := func(want ...string) func(*testing.T, Features) {
		return func(t *testing.T, got Features) {
			if !slices.Equal(got.Outbound, want) {
				t.Errorf("Outbound = %v, want %v", got.Outbound, want)
			}
		}
	}
	runCheckCases(t, []checkCase{
		{name: "both usable", id: IDOutbound, status: OK, detail: "usable: slirp4netns, pasta", features: outbound("slirp4netns", "pasta")},
		{name: "tun 0600 (this machine)", id: IDOutbound, status: Warn, detail: "/dev/net/tun is not readable and writable by alice",
			setup: func(f *fixture) { f.chmod("/dev/net/tun", 0o600) },
			fix:   "sudo chmod 0666 /dev/net/tun", features: outbound()},
		{name: "tun missing", id: IDOutbound, status: Warn, detail: "/dev/net/tun does not exist",
			setup: func(f *fixture) { f.remove("/dev/net/tun") },
			fix:   "sudo modprobe tun", features: outbound()},
		{name: "no helper", id: IDOutbound, status: Warn, detail: "crib runs without outside network",
			setup: func(f *fixture) { f.remove("/usr/bin/slirp4netns"); f.remove("/usr/bin/pasta") },
			fix:   "sudo apt-get install slirp4netns", features: outbound()},
		{name: "only pasta", id: IDOutbound, status: OK, detail: "usable: pasta",
			setup: func(f *fixture) { f.remove("/usr/bin/slirp4netns") }, features: outbound("pasta")},
		{name: "configured pasta missing", id: IDOutbound, status: Warn, detail: "the configured outbound helper pasta is not usable",
			setup: func(f *fixture) { f.remove("/usr/bin/pasta"); f.cfg.Network.Outbound = "pasta" },
			fix:   "sudo apt-get install passt"},
		{name: "configured none", id: IDOutbound, status: OK, detail: "disabled by configuration",
			setup: func(f *fixture) { f.remove("/dev/net/tun"); f.cfg.Network.Outbound = "none" }},
		{name: "as root", id: IDOutbound, status: OK, detail: "not needed as root",
			setup: func(f *fixture) { asRoot(f); f.remove("/dev/net/tun") }},
	})
}

func TestCNIPlugins(t *testing.T) {
	runCheckCases(t, []checkCase{
		{name: "all in /usr/lib/cni", id: IDCNIPlugins, status: OK, detail: "bridge, host-local, portmap, loopback in /usr/lib/cni:/opt/cni/bin"},
		{name: "portmap missing", id: IDCNIPlugins, status: Warn, detail: "portmap not found in /usr/lib/cni:/opt/cni/bin: NetworkReady stays false",
			setup: func(f *fixture) { f.remove("/usr/lib/cni/portmap") },
			fix:   "sudo apt-get install containernetworking-plugins",
			features: func(t *testing.T, got Features) {
				if got.CNIPluginDir != "" {
					t.Errorf("CNIPluginDir = %q, want empty", got.CNIPluginDir)
				}
			}},
		{name: "installed where Fedora puts them", id: IDCNIPlugins, status: Warn, detail: "bridge, host-local, portmap, loopback not found",
			setup: func(f *fixture) {
				f.remove("/usr/lib/cni")
				for _, p := range cniPlugins() {
					f.write("/usr/libexec/cni/"+p, "", 0o755)
				}
			},
			fix: "crib serve --cni-plugin-dir=/usr/libexec/cni"},
		{name: "split across configured dirs", id: IDCNIPlugins, status: OK, detail: "in /usr/lib/cni:/opt/cni/bin",
			setup: func(f *fixture) { f.remove("/usr/lib/cni/portmap"); f.write("/opt/cni/bin/portmap", "", 0o755) },
			features: func(t *testing.T, got Features) {
				if got.CNIPluginDir != "" {
					t.Errorf("CNIPluginDir = %q, want empty when no dir holds them all", got.CNIPluginDir)
				}
			}},
		{name: "not executable", id: IDCNIPlugins, status: Warn, detail: "bridge not found",
			setup: func(f *fixture) { f.chmod("/usr/lib/cni/bridge", 0o644) },
			fix:   "sudo apt-get install containernetworking-plugins"},
	})
}

func TestSessionChecks(t *testing.T) {
	selinux := func(want bool) func(*testing.T, Features) {
		return func(t *testing.T, got Features) {
			if got.SELinux != want {
				t.Errorf("SELinux = %v, want %v", got.SELinux, want)
			}
		}
	}
	runCheckCases(t, []checkCase{
		{name: "no selinux", id: IDSELinux, status: OK, detail: "disabled", features: selinux(false)},
		{name: "selinux enforcing with container policy", id: IDSELinux, status: OK, detail: "enforcing, policy targeted: pods get per-pod MCS labels",
			setup: func(f *fixture) {
				f.write("/sys/fs/selinux/enforce", "1", 0o644)
				f.write("/etc/selinux/targeted/contexts/lxc_contexts", "process = \"system_u:system_r:container_t:s0\"\n", 0o644)
			}, features: selinux(true)},
		{name: "selinux enforcing without container policy", id: IDSELinux, status: Warn, detail: "/etc/selinux/mls/contexts/lxc_contexts is missing",
			setup: func(f *fixture) {
				f.write("/etc/os-release", "ID=fedora\n", 0o644)
				f.write("/sys/fs/selinux/enforce", "1", 0o644)
				f.write("/etc/selinux/config", "SELINUX=enforcing\nSELINUXTYPE=mls\n", 0o644)
			},
			fix: "sudo dnf install container-selinux", features: selinux(true)},
		{name: "selinux permissive without container policy", id: IDSELinux, status: OK, detail: "permissive",
			setup: func(f *fixture) { f.write("/sys/fs/selinux/enforce", "0", 0o644) }, features: selinux(true)},

		{name: "runtime dir fine", id: IDXDGRuntimeDir, status: OK, detail: "/run/user/1000 (owned by alice, mode 0700)"},
		{name: "unset, fallback exists", id: IDXDGRuntimeDir, status: Warn, detail: "XDG_RUNTIME_DIR is not set",
			setup: func(f *fixture) { f.h.Getenv = mapEnv(nil) },
			fix:   "export XDG_RUNTIME_DIR=/run/user/1000"},
		{name: "unset, fallback missing", id: IDXDGRuntimeDir, status: Warn, detail: "/run/user/1000 does not exist",
			setup: func(f *fixture) { f.h.Getenv = mapEnv(nil); f.remove("/run/user/1000") },
			fix:   "export XDG_RUNTIME_DIR=/run/user/1000 && sudo install -d -m 0700 -o alice -g 1000 /run/user/1000"},
		{name: "set, missing", id: IDXDGRuntimeDir, status: Warn, detail: "/run/user/1000 does not exist",
			setup: func(f *fixture) { f.remove("/run/user/1000") },
			fix:   "sudo install -d -m 0700 -o alice -g 1000 /run/user/1000"},
		{name: "wrong mode", id: IDXDGRuntimeDir, status: Warn, detail: "has mode 0755, want 0700",
			setup: func(f *fixture) { f.chmod("/run/user/1000", 0o755) },
			fix:   "chmod 0700 /run/user/1000"},
		{name: "wrong owner and mode", id: IDXDGRuntimeDir, status: Warn, detail: "owned by uid 0, not alice",
			setup: func(f *fixture) { f.remove("/run/user/1000"); f.mkdir("/run/user/1000", 0o755) },
			fix:   "sudo chown alice /run/user/1000 && sudo chmod 0700 /run/user/1000"},
		{name: "not a directory", id: IDXDGRuntimeDir, status: Warn, detail: "/tmp/x is not a directory",
			setup: func(f *fixture) {
				f.write("/tmp/x", "", 0o600)
				f.h.Getenv = mapEnv(map[string]string{"XDG_RUNTIME_DIR": "/tmp/x"})
			}},
		{name: "runtime dir as root", id: IDXDGRuntimeDir, status: OK, detail: "not needed as root",
			setup: func(f *fixture) { asRoot(f); f.h.Getenv = mapEnv(nil) }},

		{name: "lingering", id: IDLinger, status: OK, detail: "enabled for alice"},
		{name: "not lingering", id: IDLinger, status: Warn, detail: "not enabled for alice",
			setup: func(f *fixture) { f.remove("/var/lib/systemd/linger/alice") },
			fix:   "sudo loginctl enable-linger alice"},
		{name: "no systemd", id: IDLinger, status: OK, detail: "no systemd",
			setup: func(f *fixture) { f.remove("/var/lib/systemd/linger/alice"); f.remove("/run/systemd/system") }},
	})
}

func TestReportErr(t *testing.T) {
	f := newFixture(t)
	f.remove("/usr/bin/conmon")
	f.write("/proc/sys/user/max_user_namespaces", "0", 0o644)
	f.chmod("/dev/net/tun", 0o600) // not hard: must not be in the error
	rep := f.run()
	var ids []string
	for _, c := range rep.HardFailures() {
		ids = append(ids, c.ID)
	}
	if want := []string{IDUserNS, IDConmon}; !slices.Equal(ids, want) {
		t.Errorf("HardFailures = %v, want %v", ids, want)
	}
	err := rep.Err()
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Err = %v, want a failed precondition", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"2 host prerequisite(s) missing",
		"FAIL  unprivileged user namespaces: user.max_user_namespaces is 0",
		"      fix: sudo sysctl -w user.max_user_namespaces=28633",
		"      fix: sudo apt-get install conmon",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Err text lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "tun") {
		t.Errorf("Err text mentions a soft check:\n%s", msg)
	}
}

func TestEveryCheckReported(t *testing.T) {
	for _, root := range []bool{false, true} {
		f := newFixture(t)
		if root {
			asRoot(f)
		}
		var got []string
		for _, c := range f.run().Checks {
			got = append(got, c.ID)
		}
		if !slices.Equal(got, CheckIDs()) {
			t.Errorf("rootful=%v: checks %v, want %v", root, got, CheckIDs())
		}
	}
}

func TestMountinfoUnescape(t *testing.T) {
	tests := map[string]string{
		`/sys/fs/cgroup`:        "/sys/fs/cgroup",
		`/mnt/with\040space`:    "/mnt/with space",
		`/a\134b`:               `/a\b`,
		`/trailing\04`:          `/trailing\04`,
		`/not\999octal`:         `/not\999octal`,
		`/tab\011and\012eol\04`: "/tab\tand\neol\\04",
	}
	for in, want := range tests {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReportJSONRoundTrips(t *testing.T) {
	r := Report{Checks: []Check{{ID: "a", Status: OK}, {ID: "b", Status: Warn}, {ID: "c", Status: Fail, Hard: true}}}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Checks) != 3 || back.Checks[1].Status != Warn || len(back.HardFailures()) != 1 {
		t.Fatalf("round trip: %+v", back)
	}
}
