package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/atomicfile"
	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/progress"
	"github.com/crib-dev/crib/storage"
)

// The `crib image` commands work on crib's image store directly, with no
// daemon in between, so that an air-gapped node can load images before
// crib serves. Rootless, the store's files belong to crib's user
// namespace: the command, run from the user's shell, re-executes itself
// inside crib's namespaces (as `crib unshare` does) and opens the store
// there as a guest of the daemon that may be using it too; the storage
// library locks across processes.

const (
	// imageStageEnv marks the re-executed command: it runs inside crib's
	// namespaces and takes its configuration from configEnv.
	imageStageEnv = "_CRIB_IMAGE_STAGE"
	imageInside   = "inside"
	// imageInputEnv carries the descriptor of the archive `crib image
	// import FILE` opened before it re-executed, so that the file is read
	// with the user's own access, from the user's own mount namespace.
	imageInputEnv = "_CRIB_IMAGE_INPUT_FD"

	// pullProxyFileName holds the URL of the running daemon's pull proxy
	// (see hostdial.go), for pulls made inside crib's namespaces.
	pullProxyFileName = "pull-proxy.url"
	// lastPullProxyFileName keeps the proxy's URL after crib stops.
	lastPullProxyFileName = "pull-proxy.last"
)

// ImageCommand is what every `crib image` operation needs.
type ImageCommand struct {
	Config config.Config
	// Args are the command-line arguments after the program name, to
	// re-execute crib inside its namespaces with.
	Args   []string
	Stdout io.Writer
	Logger *slog.Logger
	// Terminal says Stdout is a terminal Width columns wide: pulls then
	// draw progress bars.
	Terminal bool
	Width    int
}

// ImageList prints the stored images as a table.
func ImageList(ctx context.Context, c ImageCommand) error {
	return c.withStore(nil, false, func(s *storage.Store) error {
		images, err := s.List(ctx, "")
		if err != nil {
			return err
		}
		return WriteImageTable(c.Stdout, images, time.Now())
	})
}

// ImagePull pulls ref into crib's store, drawing its progress.
func ImagePull(ctx context.Context, c ImageCommand, ref string) error {
	return c.withStore(nil, true, func(s *storage.Store) error {
		r := progress.New(c.Stdout, c.Terminal, c.Width)
		img, err := s.Pull(ctx, ref, nil, func(p storage.Progress) { r.Update(progressEvent(p)) })
		if err != nil {
			return err
		}
		name, _ := storage.Normalize(ref)
		fmt.Fprintf(c.Stdout, "pulled %s: sha256:%s\n", name, img.ID)
		return nil
	})
}

// ImageImport loads the images of an OCI archive or a docker-archive, read
// from path or, when path is "-", from standard input.
func ImageImport(ctx context.Context, c ImageCommand, path string) error {
	input, err := openImportInput(path)
	if err != nil {
		return err
	}
	defer input.Close()
	var extraEnv []string
	if path != "-" {
		// Handed across the re-execution open, so that nothing about
		// crib's mount namespace can hide the file.
		if err := clearCloseOnExec(input); err != nil {
			return err
		}
		extraEnv = []string{imageInputEnv, strconv.Itoa(int(input.Fd()))}
	}
	return c.withStore(extraEnv, false, func(s *storage.Store) error {
		images, err := s.Import(ctx, input, path)
		if err != nil {
			return err
		}
		for _, img := range images {
			names := strings.Join(img.RepoTags, ", ")
			if names == "" {
				names = "<none>"
			}
			fmt.Fprintf(c.Stdout, "imported %s: sha256:%s\n", names, img.ID)
		}
		return nil
	})
}

// openImportInput is the archive to read: the descriptor the outer command
// passed, standard input, or the named file.
func openImportInput(path string) (*os.File, error) {
	if path == "-" {
		return os.Stdin, nil
	}
	if os.Getenv(imageStageEnv) == imageInside {
		fd, err := strconv.Atoi(os.Getenv(imageInputEnv))
		if err != nil {
			return nil, fmt.Errorf("reading %s: the outer crib passed no descriptor for it", path)
		}
		os.Unsetenv(imageInputEnv)
		return os.NewFile(uintptr(fd), path), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	return f, nil
}

func clearCloseOnExec(f *os.File) error {
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("passing %s on: %w", f.Name(), err)
	}
	return nil
}

// withStore runs op on crib's store where the store's files are
// reachable: here when crib is rootful or this is the re-executed
// command, else inside crib's namespaces after re-executing (on success
// it does not return). forPull picks the running daemon's pull proxy.
func (c ImageCommand) withStore(extraEnv []string, forPull bool, op func(*storage.Store) error) error {
	cfg := c.Config
	switch {
	case os.Getenv(imageStageEnv) == imageInside:
		// Uid 0 inside would compute root's defaults: the outer
		// command's effective configuration stands.
		if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &cfg); err != nil {
			return fmt.Errorf("reading the configuration the outer crib passed: %w", err)
		}
		os.Unsetenv(imageStageEnv)
		os.Unsetenv(configEnv)
	case os.Geteuid() != 0:
		return c.reexecInside(extraEnv)
	}
	ensureSbinInPath()
	opts := storeOptions(cfg, c.Logger)
	if forPull {
		proxy, err := runningPullProxy(cfg.RunRoot)
		if err != nil {
			return err
		}
		opts.Proxy = proxy
	}
	s, err := storage.Open(opts)
	if err != nil {
		return fmt.Errorf("opening crib's image store: %w", err)
	}
	defer s.Close()
	return op(s)
}

// storeOptions opens the store the way the daemon does, as its guest.
func storeOptions(cfg config.Config, log *slog.Logger) storage.Options {
	return storage.Options{
		Root:           cfg.Root,
		RunRoot:        cfg.RunRoot,
		Driver:         cfg.Storage.Driver,
		StorageConf:    cfg.Storage.StorageConf,
		RegistriesConf: cfg.Image.RegistriesConf,
		PolicyPath:     cfg.Image.PolicyPath,
		Logger:         log,
		Guest:          true,
	}
}

// reexecInside replaces this process with crib run again, with the same
// arguments, inside the running crib's user, mount and network namespaces.
func (c ImageCommand) reexecInside(extraEnv []string) error {
	h, ok := loadHolder(c.Config.RunRoot)
	if !ok {
		return fmt.Errorf("%w: crib's namespaces do not exist (crib is not running, and no pod kept them): start crib with `crib serve`, then run this again",
			errdefs.ErrFailedPrecondition)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter (util-linux) is needed to join crib's namespaces: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding crib's own binary: %w", err)
	}
	cfgJSON, err := json.Marshal(c.Config)
	if err != nil {
		return err
	}
	env := withEnv(withEnv(os.Environ(), imageStageEnv, imageInside), configEnv, string(cfgJSON))
	for i := 0; i+1 < len(extraEnv); i += 2 {
		env = withEnv(env, extraEnv[i], extraEnv[i+1])
	}
	wd, _ := os.Getwd()
	argv := []string{nsenter, "--target", strconv.Itoa(h.PID), "--user", "--mount", "--net", "--wdns=" + wd, "--", exe}
	return syscall.Exec(nsenter, append(argv, c.Args...), env)
}

// runningPullProxy is the proxy of the daemon serving this runroot, so
// that a pull from inside crib's network namespace reaches registries on
// the host's loopback as the daemon's own pulls do. With no daemon (or a
// dead one's leftover file) pulls go out directly.
func runningPullProxy(runRoot string) (func(*url.URL) (*url.URL, error), error) {
	data, err := os.ReadFile(filepath.Join(runRoot, pullProxyFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading crib's pull proxy: %w", err)
	}
	u, err := url.Parse(strings.TrimSpace(string(data)))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("crib's pull proxy file %s is corrupt: %q", pullProxyFileName, data)
	}
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return nil, nil
	}
	c.Close()
	return func(*url.URL) (*url.URL, error) { return u, nil }, nil
}

// publishPullProxy writes the daemon's pull proxy URL where `crib image
// pull` finds it; the returned function removes it. The address is also
// kept, in a file that outlives this crib, for the next one to reuse.
func publishPullProxy(runRoot, proxyURL string) (func(), error) {
	path := filepath.Join(runRoot, pullProxyFileName)
	for _, p := range []string{path, filepath.Join(runRoot, lastPullProxyFileName)} {
		if err := atomicfile.WriteFile(p, []byte(proxyURL+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("publishing the pull proxy: %w", err)
		}
	}
	return func() { os.Remove(path) }, nil
}

// previousPullProxy is the URL (loopback address and login) of the pull
// proxy the last crib on this runroot served, or nil.
func previousPullProxy(runRoot string) *url.URL {
	data, err := os.ReadFile(filepath.Join(runRoot, lastPullProxyFileName))
	if err != nil {
		return nil
	}
	u, err := url.Parse(strings.TrimSpace(string(data)))
	if err != nil || u.Scheme != "socks5" || u.Hostname() != "127.0.0.1" {
		return nil
	}
	return u
}

func progressEvent(p storage.Progress) progress.Event {
	kind := map[storage.ProgressEvent]progress.Kind{
		storage.ProgressStarted: progress.Started,
		storage.ProgressRead:    progress.Read,
		storage.ProgressDone:    progress.Done,
		storage.ProgressSkipped: progress.Skipped,
	}[p.Event]
	return progress.Event{ID: p.Digest, Kind: kind, Offset: p.Offset, Total: p.Total}
}

// imageRow is one line of `crib image ls`: an image once per name.
type imageRow struct {
	repo, tag, id, size, created string
}

// WriteImageTable prints images as `crictl images` does, with their age
// at now: one row per tag, an untagged image once as <none>.
func WriteImageTable(w io.Writer, images []storage.Image, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tSIZE\tCREATED")
	for _, r := range imageRows(images, now) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.repo, r.tag, r.id, r.size, r.created)
	}
	return tw.Flush()
}

func imageRows(images []storage.Image, now time.Time) []imageRow {
	var rows []imageRow
	for _, img := range images {
		base := imageRow{
			id:      progress.ShortID(img.ID),
			size:    progress.HumanSize(int64(img.Size)),
			created: age(img.Created, now),
		}
		for _, name := range img.RepoTags {
			r := base
			r.repo, r.tag = splitTag(name)
			rows = append(rows, r)
		}
		if len(img.RepoTags) == 0 {
			r := base
			r.repo, r.tag = "<none>", "<none>"
			if len(img.RepoDigests) > 0 {
				r.repo, _, _ = strings.Cut(img.RepoDigests[0], "@")
			}
			rows = append(rows, r)
		}
	}
	slices.SortFunc(rows, func(a, b imageRow) int {
		return cmp.Or(cmp.Compare(a.repo, b.repo), cmp.Compare(a.tag, b.tag), cmp.Compare(a.id, b.id))
	})
	return rows
}

// splitTag splits "host:port/repo:tag" at the tag's colon, which is the
// last one after the last slash.
func splitTag(name string) (repo, tag string) {
	i := strings.LastIndexByte(name, ':')
	if i < 0 || strings.Contains(name[i:], "/") {
		return name, "<none>"
	}
	return name[:i], name[i+1:]
}

// age says how long ago t was, the way people say it ("3 days ago").
func age(t, now time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in the future"
	}
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return strconv.Itoa(n) + " " + unit + "s ago"
	}
	switch day := 24 * time.Hour; {
	case d < time.Minute:
		return "less than a minute ago"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < day:
		return plural(int(d/time.Hour), "hour")
	case d < 14*day:
		return plural(int(d/day), "day")
	case d < 60*day:
		return plural(int(d/(7*day)), "week")
	case d < 730*day:
		return plural(int(d/(30*day)), "month")
	default:
		return plural(int(d/(365*day)), "year")
	}
}
