package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/config"
)

func TestCrictlConfig(t *testing.T) {
	cfg := config.Default(testEnv).Finalize()
	var out, errOut bytes.Buffer
	if err := crictlConfig(&out, &errOut, cfg, testEnv, false, ""); err != nil {
		t.Fatal(err)
	}
	want := "# crictl configuration for crib; written by 'crib crictl-config'.\n" +
		"runtime-endpoint: unix:///run/user/1000/crib/crib.sock\n" +
		"image-endpoint: unix:///run/user/1000/crib/crib.sock\n" +
		"timeout: 10\n"
	if out.String() != want {
		t.Fatalf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
	if !strings.Contains(errOut.String(), "nothing answers") {
		t.Errorf("no note that crib is not running: %q", errOut.String())
	}

	path := filepath.Join(t.TempDir(), "sub", "crictl.yaml")
	out.Reset()
	if err := crictlConfig(&out, &errOut, cfg, testEnv, true, path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Fatalf("wrote %q", b)
	}
	if !strings.Contains(out.String(), "export CRI_CONFIG_FILE="+path) {
		t.Errorf("no export line: %s", out.String())
	}
}

func TestCrictlConfigPath(t *testing.T) {
	if got := crictlConfigPath(testEnv); got != "/home/ann/.config/crib/crictl.yaml" {
		t.Errorf("user path %s", got)
	}
	if got := crictlConfigPath(config.Env{UID: 0, Home: "/root"}); got != "/etc/crictl.yaml" {
		t.Errorf("root path %s", got)
	}
}

func TestInstallService(t *testing.T) {
	home := t.TempDir()
	env := testEnv
	env.Home = home
	cfg := config.Default(env).Finalize()
	var out bytes.Buffer
	if err := installService(&out, cfg, env, "/opt/crib/bin/crib", "ann", "", false); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(home, ".config", "systemd", "user")
	svc, err := os.ReadFile(filepath.Join(dir, "crib.service"))
	if err != nil {
		t.Fatal(err)
	}
	sock, err := os.ReadFile(filepath.Join(dir, "crib.socket"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svc, []byte("ExecStart=/opt/crib/bin/crib serve\n")) {
		t.Errorf("service does not run the binary:\n%s", svc)
	}
	if !bytes.Contains(sock, []byte("ListenStream=%t/crib/crib.sock\n")) {
		t.Errorf("socket is not crib's default:\n%s", sock)
	}
	for _, want := range []string{"systemctl --user enable --now crib.socket crib.service", "loginctl enable-linger ann"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// A socket moved by the configuration is the one systemd listens on.
	cfg.Listen = "/srv/crib.sock"
	out.Reset()
	if err := installService(&out, cfg, env, "/opt/crib/bin/crib", "ann", "", true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ListenStream=/srv/crib.sock\n") {
		t.Errorf("printed units ignore --listen:\n%s", out.String())
	}
}
