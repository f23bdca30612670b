package oci

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestArgvGolden: every command line each implementation builds, for a
// plain and a systemd-cgroup handler, against testdata/argv-NAME.golden.
func TestArgvGolden(t *testing.T) {
	for _, name := range []string{"runc", "crun"} {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			for _, systemd := range []bool{false, true} {
				r := testCLI(t, name, systemd)
				b.WriteString("# " + name + " systemd=" + map[bool]string{false: "false", true: "true"}[systemd] + "\n")
				for _, argv := range allArgv(r) {
					b.WriteString(strings.Join(argv, " ") + "\n")
				}
			}
			checkGolden(t, filepath.Join("testdata", "argv-"+name+".golden"), b.String())
		})
	}
}

func testCLI(t *testing.T, name string, systemd bool) *cli {
	t.Helper()
	c := Config{Name: name, Path: "/usr/bin/" + name, Root: "/run/crib/" + name, SystemdCgroup: systemd,
		Monitor: Monitor{Path: "/usr/bin/conmon", ExitDir: "/run/crib/exits", AttachDir: "/run/crib/attach"}}
	switch kindOf(c) {
	case "runc":
		return newRunc(c)
	case "crun":
		return newCrun(c)
	}
	t.Fatalf("no implementation for %s", name)
	return nil
}

func allArgv(r *cli) [][]string {
	exec := ExecRequest{ID: "c1", ProcessFile: "/b/c1/exec-1.json", PidFile: "/b/c1/exec-1.pid"}
	create := CreateRequest{ID: "c1", Name: "k8s_app_pod_ns_uid_0", Bundle: "/b/c1", PidFile: "/b/c1/pidfile",
		MonitorPidFile: "/b/c1/conmon.pid", LogPath: "/var/log/pods/p/app/0.log"}
	attachable := create
	attachable.LogPath, attachable.TTY, attachable.Stdin = "", true, true
	once := attachable
	once.StdinOnce = true
	return [][]string{
		r.monitorArgs(create),
		r.monitorArgs(attachable),
		r.monitorArgs(once),
		r.startArgs("c1"),
		r.killArgs("c1", unix.SIGTERM, false),
		r.killArgs("c1", unix.SIGKILL, true),
		r.deleteArgs("c1"),
		r.stateArgs("c1"),
		r.updateArgs("c1"),
		r.execArgs(exec),
		r.execTTYArgs(exec, "/run/crib/console/abc"),
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update after checking):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// TestNewChoosesByName: the handler's name, else the binary's, picks the
// implementation; anything else is refused.
func TestNewChoosesByName(t *testing.T) {
	conmon := "/bin/true" // New resolves the monitor; any executable does
	for _, tc := range []struct {
		name, path string
		want       []string // systemd global args, or nil for an error
	}{
		{"runc", "/usr/sbin/runc", []string{"--systemd-cgroup"}},
		{"crun", "/usr/bin/crun", []string{"--cgroup-manager=systemd"}},
		{"fast", "/opt/bin/crun", []string{"--cgroup-manager=systemd"}},
		{"kata", "/usr/bin/kata-runtime", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := New(Config{Name: tc.name, Path: tc.path, Root: t.TempDir(), Monitor: Monitor{Path: conmon}})
			if tc.want == nil {
				if err == nil {
					t.Fatalf("New accepted %s", tc.path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rt.(*cli).systemdArgs; strings.Join(got, " ") != strings.Join(tc.want, " ") || rt.Name() != tc.name {
				t.Errorf("%s: name %q, systemd args %v; want %v", tc.name, rt.Name(), got, tc.want)
			}
		})
	}
}

// TestSpecVersion: crun gets a config.json version it accepts; runc the
// generated one.
func TestSpecVersion(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"runc", "1.2.1", "1.2.1"},
		{"crun", "1.2.1", "1.1.0"},
		{"crun", "1.0.2", "1.0.2"},
		{"crun", "2.0.0", "1.1.0"},
	} {
		if got := testCLI(t, tc.name, false).SpecVersion(tc.in); got != tc.want {
			t.Errorf("%s.SpecVersion(%s) = %s, want %s", tc.name, tc.in, got, tc.want)
		}
	}
}
