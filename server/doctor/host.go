package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/crib-dev/crib/internal/config"
)

// Host describes where and as whom the checks look. Production uses
// CurrentHost; tests point Root at a fixture tree and inject the rest.
type Host struct {
	// Root is the filesystem root every /proc, /sys, /etc, /dev, /run and
	// /var path is read under: "/" in production.
	Root string
	// UID, GID and Groups are the identity crib runs as; UID 0 is rootful.
	UID    int
	GID    int
	Groups []int
	// User is the login name, matched against /etc/subuid and used in fixes.
	User string
	// Getenv reads the environment crib runs in.
	Getenv func(string) string
	// LookPath finds a program on PATH; the path it returns is read under
	// Root like any other.
	LookPath func(string) (string, error)
	// Executable is crib's own binary ("" when unknown), beside which
	// `crib serve` looks for its host-side parent; read under Root.
	Executable string
	Probes     Probes
}

// Probes are the checks that must run something rather than read files.
// A nil probe is reported as "not probed", never as success.
type Probes struct {
	// OverlayInUserNS mounts a native overlay where crib would: inside a new
	// user and mount namespace when not root, in a new mount namespace as
	// root. nil error means it mounted.
	OverlayInUserNS func() error
	// Version runs the program at path with --version and returns its first
	// line; an error means the program does not run.
	Version func(path string) (string, error)
}

// probeTimeout bounds every program a probe runs, so a wedged helper
// cannot hang `crib doctor` or `crib serve`.
const probeTimeout = 10 * time.Second

// CurrentHost describes the running process on the real filesystem.
func CurrentHost(cfg config.Config) Host {
	uid := os.Getuid()
	groups, _ := os.Getgroups() // no groups is a safe under-estimate of access
	h := Host{
		Root:     "/",
		UID:      uid,
		GID:      os.Getgid(),
		Groups:   groups,
		User:     currentUserName(uid),
		Getenv:   os.Getenv,
		LookPath: exec.LookPath,
	}
	h.Executable, _ = os.Executable()
	h.Probes = Probes{
		OverlayInUserNS: func() error { return probeOverlay(cfg.Root, uid == 0) },
		Version:         probeVersion,
	}
	return h
}

func currentUserName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	if name := os.Getenv("USER"); name != "" {
		return name
	}
	return strconv.Itoa(uid)
}

func probeVersion(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil {
		return "", fmt.Errorf("running %s --version: %w: %s", path, err, first)
	}
	return first, nil
}

// probeOverlay mounts an overlay in a scratch directory next to where crib
// keeps its layers (overlay support depends on the filesystem underneath),
// inside namespaces that vanish when unshare exits, so nothing stays mounted.
func probeOverlay(storageRoot string, rootful bool) error {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return fmt.Errorf("finding unshare (util-linux) to run the overlay probe: %w", err)
	}
	dir, err := os.MkdirTemp(nearestDir(storageRoot), ".crib-overlay-probe-")
	if err != nil {
		return fmt.Errorf("making overlay probe directory: %w", err)
	}
	defer removeProbeDir(dir)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return fmt.Errorf("making overlay probe directory: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	args := []string{"--mount"}
	if !rootful {
		args = []string{"--user", "--map-root-user", "--mount"}
	}
	args = append(args, "mount", "-t", "overlay", "overlay", "-o", opts, filepath.Join(dir, "merged"))
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, unshare, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("mounting overlay under %s: %w: %s", filepath.Dir(dir), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeProbeDir removes the probe directory; overlay leaves work/work with
// mode 0, which even its owner cannot list until it is made readable.
func removeProbeDir(dir string) {
	_ = os.Chmod(filepath.Join(dir, "work", "work"), 0o700)
	_ = os.RemoveAll(dir)
}

// nearestDir is dir, or its closest existing ancestor: crib's storage root
// may not exist before the first `crib serve`.
func nearestDir(dir string) string {
	for d := filepath.Clean(dir); d != "" && d != "."; d = filepath.Dir(d) {
		if info, err := os.Stat(d); err == nil && info.IsDir() {
			return d
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	return os.TempDir()
}

// path is p (an absolute host path) under Root.
func (h Host) path(p string) string { return filepath.Join(h.Root, p) }

func (h Host) rootful() bool { return h.UID == 0 }

func (h Host) getenv(key string) string {
	if h.Getenv == nil {
		return ""
	}
	return h.Getenv(key)
}

// readTrim reads a small file under Root, trimmed of surrounding space.
func (h Host) readTrim(p string) (string, error) {
	b, err := os.ReadFile(h.path(p))
	return strings.TrimSpace(string(b)), err
}

func (h Host) exists(p string) bool {
	_, err := os.Stat(h.path(p))
	return err == nil
}

// access is a set of permission bits in the rwx order of a mode triplet.
type access uint32

const (
	mayExec  access = 1
	mayWrite access = 2
	mayRead  access = 4
)

// may reports whether the host's user may access p under Root in the way
// want says, from the file's owner, group and mode. The process running the
// checks may not be that user (tests run as root over fixture trees), so
// asking the kernel (access(2), open) could answer for the wrong one.
// ACLs are not consulted.
func (h Host) may(p string, want access) (bool, error) {
	info, err := os.Stat(h.path(p))
	if err != nil {
		return false, err
	}
	return h.allowed(info, want), nil
}

func (h Host) allowed(info fs.FileInfo, want access) bool {
	perm := uint32(info.Mode().Perm())
	if h.rootful() {
		// Root passes read and write checks outright, and exec when any x bit is set.
		return want&mayExec == 0 || info.IsDir() || perm&0o111 != 0
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	var bits uint32
	switch {
	case int(st.Uid) == h.UID:
		bits = perm >> 6
	case int(st.Gid) == h.GID || slices.Contains(h.Groups, int(st.Gid)):
		bits = perm >> 3 & 7
	default:
		bits = perm & 7
	}
	return access(bits)&want == want
}

func ownerOf(info fs.FileInfo) int {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// program is a located executable: Path is the host path, Problem says why
// it cannot be used ("" when it can).
type program struct {
	Name    string
	Path    string
	Problem string
}

func (p program) usable() bool { return p.Path != "" && p.Problem == "" }

// sbinDirs are searched after PATH: an unprivileged user's PATH on Debian
// lacks /usr/sbin, where runc lives.
func sbinDirs() []string {
	return []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"}
}

// findProgram locates name: at configured when set (no fallback, since the
// user asked for that file), else on PATH, else in sbinDirs and extraDirs.
func (h Host) findProgram(name, configured string, extraDirs ...string) program {
	p := program{Name: name}
	if configured != "" {
		p.Path = configured
		p.Problem = h.executableProblem(configured)
		return p
	}
	if h.LookPath != nil {
		if found, err := h.LookPath(name); err == nil {
			p.Path = found
			p.Problem = h.executableProblem(found)
			return p
		}
	}
	for _, dir := range append(sbinDirs(), extraDirs...) {
		cand := filepath.Join(dir, name)
		if info, err := os.Stat(h.path(cand)); err == nil && info.Mode().IsRegular() {
			p.Path = cand
			p.Problem = h.executableProblem(cand)
			return p
		}
	}
	p.Problem = name + " is not installed (not on PATH nor in " + strings.Join(sbinDirs(), ", ") + ")"
	return p
}

func (h Host) executableProblem(p string) string {
	info, err := os.Stat(h.path(p))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p + " does not exist"
	case err != nil:
		return err.Error()
	case !info.Mode().IsRegular():
		return p + " is not a regular file"
	case !h.allowed(info, mayExec):
		return p + " is not executable by " + h.User
	}
	return ""
}

// version runs the version probe for a located program, folding a failure
// into the program's problem.
func (h Host) version(p *program) string {
	if !p.usable() || h.Probes.Version == nil {
		return ""
	}
	v, err := h.Probes.Version(p.Path)
	if err != nil {
		p.Problem = err.Error()
		return ""
	}
	return v
}

// deviceProblem says why the user cannot open a device node read-write,
// or "" when it can.
func (h Host) deviceProblem(dev string) string {
	ok, err := h.may(dev, mayRead|mayWrite)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return dev + " does not exist"
	case err != nil:
		return err.Error()
	case !ok:
		return dev + " is not readable and writable by " + h.User
	}
	return ""
}

// osRelease reads ID and ID_LIKE from /etc/os-release (or
// /usr/lib/os-release) to pick the package manager for fixes.
func (h Host) osRelease() []string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		f, err := os.Open(h.path(p))
		if err != nil {
			continue
		}
		defer f.Close()
		var ids []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			key, val, ok := strings.Cut(sc.Text(), "=")
			if !ok || (key != "ID" && key != "ID_LIKE") {
				continue
			}
			ids = append(ids, strings.Fields(strings.Trim(val, `"'`))...)
		}
		return ids
	}
	return nil
}
