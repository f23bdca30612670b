package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/progress"
	"github.com/crib-dev/crib/server"
	"github.com/crib-dev/crib/server/rootless"
	"github.com/crib-dev/crib/storage"
)

// The `crib image` commands work on crib's image store directly, with no
// daemon in between, so that an air-gapped node can load images before
// crib serves. Rootless, the store's files belong to crib's user
// namespace: the command, run from the user's shell, re-executes itself
// inside crib's namespaces (as `crib unshare` does) and opens the store
// there as a guest of the daemon that may be using it too; the storage
// library locks across processes.

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
	return c.withStore(nil, false, func(s *storage.Store, _ *os.File) error {
		images, err := s.List(ctx, "")
		if err != nil {
			return err
		}
		return WriteImageTable(c.Stdout, images, time.Now())
	})
}

// ImagePull pulls ref into crib's store, drawing its progress.
func ImagePull(ctx context.Context, c ImageCommand, ref string) error {
	return c.withStore(nil, true, func(s *storage.Store, _ *os.File) error {
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
	var outer *os.File
	if path != "-" && !rootless.IsGuest() {
		// Opened here, with the user's own access and from the user's
		// own mount namespace, and handed on open.
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
		}
		defer f.Close()
		outer = f
	}
	return c.withStore(outer, false, func(s *storage.Store, input *os.File) error {
		if path == "-" {
			input = os.Stdin
		} else if input == nil {
			return fmt.Errorf("reading %s: the outer crib passed no descriptor for it", path)
		}
		defer input.Close()
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

// withStore runs op on crib's store where the store's files are
// reachable: here when crib is rootful or this is the re-executed
// command, else inside crib's namespaces after re-executing with input
// (on success it does not return). op gets the input the re-executed
// command was handed (nil outside). forPull picks the running daemon's
// pull proxy.
func (c ImageCommand) withStore(input *os.File, forPull bool, op func(*storage.Store, *os.File) error) error {
	g, inside, err := rootless.TakeGuest()
	if err != nil {
		return err
	}
	cfg := c.Config
	switch {
	case inside:
		cfg = g.Config
	case os.Geteuid() != 0:
		return rootless.EnterAsGuest(c.Config, c.Args, input)
	default:
		g.Input = input
	}
	server.EnsureSbinInPath()
	opts := storeOptions(cfg, c.Logger)
	if forPull {
		proxy, err := rootless.RunningPullProxy(cfg.RunRoot)
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
	return op(s, g.Input)
}

// storeOptions opens the store the way the daemon does, as its guest.
func storeOptions(cfg config.Config, log *slog.Logger) storage.Options {
	o := server.StoreOptions(cfg, log)
	o.Guest = true
	return o
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
