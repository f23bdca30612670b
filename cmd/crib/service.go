package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/crib-dev/crib/contrib/systemd"
	"github.com/crib-dev/crib/internal/config"
)

// crictlTimeout is crictl's per-call timeout in seconds; pulls of large
// images through a slow registry need more than crictl's default of 2.
const crictlTimeout = 10

// crictlYAML is a crictl.yaml for the socket: both endpoints are crib's.
func crictlYAML(socket string) string {
	return fmt.Sprintf("# crictl configuration for crib; written by 'crib crictl-config'.\nruntime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: %d\n", socket, socket, crictlTimeout)
}

// crictlConfigPath is where --write puts the file: crictl's own default as
// root, else a file of the user's that CRI_CONFIG_FILE must name (a user
// cannot write /etc/crictl.yaml, and the file is per user anyway).
func crictlConfigPath(env config.Env) string {
	if env.Rootful() {
		return "/etc/crictl.yaml"
	}
	return filepath.Join(filepath.Dir(env.ConfigPath()), "crictl.yaml")
}

func runCrictlConfig(_ context.Context, cfg config.Config, fs *flag.FlagSet) error {
	if fs.NArg() != 0 {
		return errors.New("crib crictl-config takes no arguments")
	}
	return crictlConfig(os.Stdout, os.Stderr, cfg, config.CurrentEnv(), flagBool(fs, "write"), flagString(fs, "file"))
}

func crictlConfig(stdout, stderr io.Writer, cfg config.Config, env config.Env, write bool, path string) error {
	if !socketAnswers(cfg.Listen) {
		fmt.Fprintf(stderr, "crib: note: nothing answers on %s yet; start crib with 'crib serve' (or its service)\n", cfg.Listen)
	}
	yaml := crictlYAML(cfg.Listen)
	if !write {
		fmt.Fprint(stdout, yaml)
		return nil
	}
	if path == "" {
		path = crictlConfigPath(env)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		return fmt.Errorf("writing crictl's configuration: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	if path != "/etc/crictl.yaml" {
		fmt.Fprintf(stdout, "crictl reads it when CRI_CONFIG_FILE names it; add to your shell profile:\n  export CRI_CONFIG_FILE=%s\n", path)
	}
	return nil
}

func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func runInstallService(_ context.Context, cfg config.Config, fs *flag.FlagSet) error {
	if fs.NArg() != 0 {
		return errors.New("crib install-service takes no arguments")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding crib's own binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return fmt.Errorf("finding crib's own binary: %w", err)
	}
	env := config.CurrentEnv()
	name := strconv.Itoa(env.UID)
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return installService(os.Stdout, cfg, env, exe, name, flagString(fs, "dir"), flagBool(fs, "print"))
}

func installService(w io.Writer, cfg config.Config, env config.Env, exe, userName, dir string, printOnly bool) error {
	units, err := systemd.Render(systemd.Install{
		Binary: exe, Listen: cfg.Listen, RuntimeDir: env.RuntimeDir(), System: env.Rootful(),
	})
	if err != nil {
		return err
	}
	if printOnly {
		for _, u := range units {
			fmt.Fprintf(w, "# --- %s\n%s\n", u.Name, u.Content)
		}
		return nil
	}
	if dir == "" {
		dir = systemd.Dir(env.Rootful(), env.Home, env.XDGConfigHome)
	}
	paths, err := systemd.Write(dir, units)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s\nNow run:\n%s", strings.Join(paths, ", "), systemd.NextSteps(env.Rootful(), userName))
	return nil
}
