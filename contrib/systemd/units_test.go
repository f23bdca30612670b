package systemd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/golden"
)

func render(t *testing.T, in Install) map[string][]byte {
	t.Helper()
	units, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, u := range units {
		out[u.Name] = u.Content
	}
	return out
}

var cases = []struct {
	name string
	in   Install
}{
	{"user", Install{Binary: "/home/ann/.local/bin/crib", Listen: "/run/user/1000/crib/crib.sock", RuntimeDir: "/run/user/1000"}},
	{"system", Install{Binary: "/usr/local/bin/crib", Listen: "/run/crib/crib.sock", RuntimeDir: "/run", System: true}},
	{"odd-paths", Install{Binary: "/opt/my crib/100%/crib", Listen: "/srv/crib%/crib.sock", RuntimeDir: "/run/user/1000"}},
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range cases {
		for name, got := range render(t, tc.in) {
			golden.Check(t, filepath.Join("testdata", tc.name+"."+name), got)
		}
	}
}

// The settings the daemon's design depends on, checked by name so a
// template edit cannot drop one silently.
func TestRequiredSettings(t *testing.T) {
	units := render(t, cases[0].in)
	for unit, lines := range map[string][]string{
		"crib.service": {"Type=notify", "Restart=on-failure", "KillMode=process", "Delegate=yes", "ExecStart=/home/ann/.local/bin/crib serve", "ExecReload=/bin/kill -HUP $MAINPID", "WantedBy=default.target"},
		"crib.socket":  {"ListenStream=%t/crib/crib.sock", "SocketMode=0600"},
	} {
		have := map[string]bool{}
		for _, l := range strings.Split(string(units[unit]), "\n") {
			have[strings.TrimSpace(l)] = true
		}
		for _, l := range lines {
			if !have[l] {
				t.Errorf("%s lacks %q", unit, l)
			}
		}
	}
	if sys := render(t, cases[1].in); !bytes.Contains(sys["crib.service"], []byte("WantedBy=multi-user.target")) {
		t.Error("system crib.service is not wanted by multi-user.target")
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checker on the rendered
// units, as a user and as a system manager would load them. systemd is not
// PID 1 on the test machines, but systemd-analyze verify needs only the
// files. It exits 0 even for a bad setting it ignores, so any output fails
// the test.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd); the settings are still checked by TestRequiredSettings")
	}
	exe, err := os.Executable() // any existing executable stands in for crib
	if err != nil {
		t.Fatal(err)
	}
	for _, system := range []bool{false, true} {
		dir := t.TempDir()
		runtimeDir := filepath.Join(dir, "run")
		os.MkdirAll(runtimeDir, 0o700)
		units, err := Render(Install{Binary: exe, Listen: filepath.Join(runtimeDir, "crib", "crib.sock"), RuntimeDir: runtimeDir, System: system})
		if err != nil {
			t.Fatal(err)
		}
		paths, err := Write(filepath.Join(dir, "units"), units)
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"verify"}, paths...)
		if !system {
			args = append([]string{"--user"}, args...)
		}
		cmd := exec.Command(analyze, args...)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtimeDir, "SYSTEMD_LOG_LEVEL=notice")
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// A unit with a setting systemd does not know must fail the check above;
// this guards the guard.
func TestSystemdAnalyzeCatchesBadSetting(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.service")
	os.WriteFile(bad, []byte("[Service]\nType=notifyx\nExecStart=/bin/true\n"), 0o644)
	out, _ := exec.Command(analyze, "verify", bad).CombinedOutput()
	if len(bytes.TrimSpace(out)) == 0 {
		t.Fatal("systemd-analyze said nothing about Type=notifyx; TestSystemdAnalyzeVerify would miss errors")
	}
}

func TestWriteAndDir(t *testing.T) {
	if got := Dir(false, "/home/ann", ""); got != "/home/ann/.config/systemd/user" {
		t.Errorf("user dir %s", got)
	}
	if got := Dir(false, "/home/ann", "/cfg"); got != "/cfg/systemd/user" {
		t.Errorf("user dir with XDG_CONFIG_HOME %s", got)
	}
	if got := Dir(true, "/root", ""); got != "/etc/systemd/system" {
		t.Errorf("system dir %s", got)
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	paths, err := Write(dir, []Unit{{Name: "x.service", Content: []byte("one")}})
	if err != nil || len(paths) != 1 {
		t.Fatal(paths, err)
	}
	if b, _ := os.ReadFile(paths[0]); string(b) != "one" {
		t.Fatalf("wrote %q", b)
	}
	if _, err := Render(Install{Binary: "crib", Listen: "/x"}); err == nil {
		t.Error("relative binary path accepted")
	}
}
