// Package systemd owns crib's systemd unit templates (crib.service and
// crib.socket, next to this file) and renders them for one installation:
// the path of the crib binary, the CRI socket of crib's configuration and
// the target of a user or a system service. It writes unit files and says
// which systemctl commands to run; it must not run them or talk to
// systemd itself.
package systemd

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

//go:embed crib.service.in crib.socket.in
var templates embed.FS

// Install says what to render and for whom.
type Install struct {
	// Binary is the absolute path of the crib to run.
	Binary string
	// Listen is the CRI socket path of crib's configuration.
	Listen string
	// RuntimeDir is where %t points for this manager ($XDG_RUNTIME_DIR
	// for a user, /run for the system); a socket under it is written
	// with %t so the unit stays right if the directory moves.
	RuntimeDir string
	// System renders system units (root); otherwise user units.
	System bool
}

// Unit is one rendered unit file.
type Unit struct {
	Name    string
	Content []byte
}

// Render fills the templates in.
func Render(in Install) ([]Unit, error) {
	if !filepath.IsAbs(in.Binary) || !filepath.IsAbs(in.Listen) {
		return nil, errors.New("systemd units need absolute paths of the crib binary and of the socket")
	}
	wantedBy := "default.target"
	if in.System {
		wantedBy = "multi-user.target"
	}
	vars := strings.NewReplacer(
		"@CRIB@", execPath(in.Binary),
		"@WANTEDBY@", wantedBy,
		"@LISTEN@", socketPath(in.Listen, in.RuntimeDir),
	)
	var out []Unit
	for _, name := range []string{"crib.service", "crib.socket"} {
		tmpl, err := templates.ReadFile(name + ".in")
		if err != nil {
			return nil, fmt.Errorf("reading the %s template: %w", name, err)
		}
		out = append(out, Unit{Name: name, Content: []byte(vars.Replace(string(tmpl)))})
	}
	return out, nil
}

// execPath quotes a path for ExecStart: % starts a specifier in unit
// files and a space would split the command.
func execPath(p string) string {
	p = strings.ReplaceAll(p, "%", "%%")
	if strings.ContainsAny(p, " \t\"\\") {
		p = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p) + `"`
	}
	return p
}

func socketPath(listen, runtimeDir string) string {
	if runtimeDir != "" {
		if rel, err := filepath.Rel(runtimeDir, listen); err == nil && !strings.HasPrefix(rel, "..") {
			return "%t/" + strings.ReplaceAll(rel, "%", "%%")
		}
	}
	return strings.ReplaceAll(listen, "%", "%%")
}

// Dir is where units are installed: the user's systemd configuration
// (~/.config/systemd/user, or under $XDG_CONFIG_HOME) or the system's.
func Dir(system bool, home, xdgConfigHome string) string {
	if system {
		return "/etc/systemd/system"
	}
	if xdgConfigHome == "" {
		xdgConfigHome = filepath.Join(home, ".config")
	}
	return filepath.Join(xdgConfigHome, "systemd", "user")
}

// Write puts the units in dir, each replaced whole (written aside, then
// renamed), and returns the paths written.
func Write(dir string, units []Unit) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	var paths []string
	for _, u := range units {
		path := filepath.Join(dir, u.Name)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, u.Content, 0o644); err != nil {
			return paths, fmt.Errorf("writing %s: %w", path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			os.Remove(tmp)
			return paths, fmt.Errorf("writing %s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// NextSteps is what the person runs after the units are written.
func NextSteps(system bool, user string) string {
	if system {
		return `  systemctl daemon-reload
  systemctl enable --now crib.socket crib.service
  journalctl -u crib -f          # crib's log
`
	}
	return fmt.Sprintf(`  systemctl --user daemon-reload
  systemctl --user enable --now crib.socket crib.service
  journalctl --user -u crib -f   # crib's log

Keep crib running while you are logged out (and start it at boot), once,
as root if your system asks:
  loginctl enable-linger %s
`, user)
}
