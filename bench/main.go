// Command cribbench measures a rootless crib against a rootful containerd
// over the CRI gRPC API, in one run, interleaved, with `runc` alone as the
// floor, and writes a table of medians, p90s and ratios plus an SVG chart.
//
// It owns measuring and reporting only: bench/run.sh (`make bench`) starts
// and stops the registry, crib, containerd and their clean-up; cribbench
// never starts a runtime daemon and never changes crib.
//
//	cribbench run -crib-endpoint ... -containerd-endpoint ... -out DIR
//	cribbench floor -dir BUNDLE ...   (a runtime's helper, run inside crib's namespaces)
//	cribbench clean ENDPOINT...       (remove pods an interrupted run left)
//	cribbench steps CRIB_LOG [METHOD...] (where crib's calls spent their time)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cribbench run|floor [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(os.Args[2:])
	case "floor":
		err = floorMain(os.Args[2:])
	case "clean":
		err = cleanMain(os.Args[2:])
	case "steps":
		err = stepsMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (run or floor)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cribbench:", err)
		os.Exit(1)
	}
}

// cleanMain removes the benchmark's pods from each endpoint given.
func cleanMain(endpoints []string) error {
	var errs []error
	for _, e := range endpoints {
		s, err := dialSubject(context.Background(), e, e, "", "")
		if err == nil {
			err = s.clean(context.Background())
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

type runFlags struct {
	cribEndpoint, cribRunroot, cribBin, cribUser string
	cribParent                                   int
	ctrdEndpoint, ctrdCgroupParent               string
	ctrdWrapper                                  int
	registry, work, out, runc, crun, cgroupProcs string
	iterations, smallPulls, bigPulls, pods       int
	churnClients                                 int
	churnFor                                     time.Duration
}

func parseRunFlags(args []string) (runFlags, error) {
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&f.cribEndpoint, "crib-endpoint", "", "crib's CRI endpoint (unix://...)")
	fs.StringVar(&f.cribRunroot, "crib-runroot", "", "crib's runroot (crib.pid, holder.json)")
	fs.StringVar(&f.cribBin, "crib-bin", "", "the crib binary (for `crib unshare`)")
	fs.StringVar(&f.cribUser, "crib-user", "crib-test", "the user crib runs as")
	fs.IntVar(&f.cribParent, "crib-pid", 0, "pid of `crib serve` (the parent)")
	fs.StringVar(&f.ctrdEndpoint, "containerd-endpoint", "", "containerd's CRI endpoint")
	fs.StringVar(&f.ctrdCgroupParent, "containerd-cgroup-parent", "/cribbench-containerd", "pod cgroup parent for containerd")
	fs.IntVar(&f.ctrdWrapper, "containerd-reaper-pid", 0, "pid of the subreaper containerd runs under")
	fs.StringVar(&f.registry, "registry", "127.0.0.1:5000", "local registry")
	fs.StringVar(&f.work, "work", "/var/tmp/crib-bench", "scratch directory (logs, floor bundle)")
	fs.StringVar(&f.out, "out", "", "results directory")
	fs.StringVar(&f.runc, "runc", "/usr/sbin/runc", "runc for the floor")
	fs.StringVar(&f.crun, "crun", "/usr/bin/crun", "crun for the floor (none when it does not exist)")
	fs.StringVar(&f.cgroupProcs, "cgroup-procs", "", "comma-separated cgroup.procs files of the delegated subtree (floor)")
	fs.IntVar(&f.iterations, "iterations", 20, "iterations of each latency operation")
	fs.IntVar(&f.smallPulls, "small-pulls", 10, "pulls of the small image")
	fs.IntVar(&f.bigPulls, "big-pulls", 5, "pulls of the 100 MB image")
	fs.IntVar(&f.pods, "pods", 100, "pods for the scale phase")
	fs.IntVar(&f.churnClients, "churn-clients", 4, "concurrent clients in the churn phase")
	fs.DurationVar(&f.churnFor, "churn-window", 8*time.Second, "length of each churn window")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.cribEndpoint == "" || f.ctrdEndpoint == "" || f.cribRunroot == "" || f.cribBin == "" ||
		f.cribParent == 0 || f.ctrdWrapper == 0 || f.out == "" {
		return f, errors.New("need -crib-endpoint, -crib-runroot, -crib-bin, -crib-pid, -containerd-endpoint, -containerd-reaper-pid and -out")
	}
	return f, nil
}

const (
	smallImage = "docker.io/library/busybox:latest"
	bigRepo    = "docker.io/cribbench/big"
	bigTag     = "100m-5layers"
	// idleSettle is how long both runtimes sit without a call before an
	// idle memory figure is taken.
	idleSettle = 2 * time.Second
)

func runMain(args []string) error {
	f, err := parseRunFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx := context.Background()
	started := time.Now()

	reg := newRegistry(f.registry)
	log.Info("generating and pushing the 100 MB image", "ref", bigRepo+":"+bigTag)
	manifest, blobs, err := bigImage(5, 20)
	if err != nil {
		return err
	}
	if err := reg.pushIfMissing(bigRepo, bigTag, manifest, blobs); err != nil {
		return err
	}
	blobs = nil

	u, err := user.Lookup(f.cribUser)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	crib, ctrd, err := dialBoth(ctx, f, uid, gid)
	if err != nil {
		return err
	}
	floors, err := prepareFloors(f, reg, u, uid, gid)
	if err != nil {
		return err
	}
	defer floors.close()
	handlers, def := crib.runtimeHandlers(ctx)
	log.Info("crib's runtime handlers", "handlers", handlers, "default", def)
	var cribRunc *subject
	if def != "runc" && slices.Contains(handlers, "runc") {
		cribRunc = crib.withHandler("runc")
	}

	b := &bench{crib: crib, cribRunc: cribRunc, cribDefault: def, ctrd: ctrd, floors: floors, smallImage: smallImage, bigImage: bigRepo + ":" + bigTag,
		iterations: f.iterations, smallPulls: f.smallPulls, bigPulls: f.bigPulls, pods: f.pods,
		churnFor: f.churnFor, log: log, figs: map[string]*figure{}, notes: map[string]string{}}
	for _, s := range []*subject{crib, ctrd} {
		if err := s.clean(ctx); err != nil {
			return err
		}
	}
	// Idle means idle: the runtimes settle as long after the cleaning
	// calls above as they do before the after-the-run figure below.
	time.Sleep(idleSettle)
	if err := b.idleMemory("fresh"); err != nil {
		return err
	}
	phases := []func() error{
		func() error { return b.pulls(ctx) },
		func() error { return ensureImage(ctx, b, smallImage) },
		func() error { return b.latencies(ctx) },
		func() error { return b.scale(ctx) },
		func() error { return b.churn(ctx, f.churnClients) },
		func() error { time.Sleep(idleSettle); return b.idleMemory("after the run") },
	}
	for _, p := range phases {
		if err := p(); err != nil {
			return err
		}
	}
	figs := applyGoals(b.figures(), b.notes, f.pods)
	return writeResults(ctx, f.out, b, figs, time.Since(started))
}

func ensureImage(ctx context.Context, b *bench, ref string) error {
	for _, s := range []*subject{b.crib, b.ctrd} {
		if err := s.pull(ctx, ref); err != nil {
			return err
		}
	}
	return nil
}

// dialBoth connects to both runtimes and finds their processes.
func dialBoth(ctx context.Context, f runFlags, uid, gid int) (crib, ctrd *subject, err error) {
	cribLogs := filepath.Join(f.work, "logs-crib")
	if err := os.MkdirAll(cribLogs, 0o755); err != nil {
		return nil, nil, err
	}
	if err := os.Chown(cribLogs, uid, gid); err != nil {
		return nil, nil, err
	}
	crib, err = dialSubject(ctx, "crib", f.cribEndpoint, "", cribLogs)
	if err != nil {
		return nil, nil, err
	}
	crib.procs, err = cribProcs(f.cribParent, f.cribRunroot)
	if err != nil {
		return nil, nil, err
	}
	ctrd, err = dialSubject(ctx, "containerd", f.ctrdEndpoint, f.ctrdCgroupParent, filepath.Join(f.work, "logs-containerd"))
	if err != nil {
		return nil, nil, err
	}
	kids := children(f.ctrdWrapper)
	if len(kids) != 1 {
		return nil, nil, fmt.Errorf("containerd's subreaper %d has children %v, want containerd alone", f.ctrdWrapper, kids)
	}
	ctrd.procs = procSet{main: kids[0], daemons: kids, roots: []int{f.ctrdWrapper}}
	return crib, ctrd, nil
}

// cribProcs reads crib's daemon pid and its namespace holder and outbound
// helper from its runroot.
func cribProcs(parent int, runroot string) (procSet, error) {
	data, err := os.ReadFile(filepath.Join(runroot, "crib.pid"))
	if err != nil {
		return procSet{}, fmt.Errorf("crib's daemon pid: %w", err)
	}
	daemon, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return procSet{}, fmt.Errorf("crib.pid: %w", err)
	}
	var h struct {
		PID       int `json:"pid"`
		HelperPID int `json:"helperPid"`
	}
	data, err = os.ReadFile(filepath.Join(runroot, "holder.json"))
	if err != nil {
		return procSet{}, fmt.Errorf("crib's namespace holder: %w", err)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return procSet{}, fmt.Errorf("holder.json: %w", err)
	}
	ps := procSet{main: daemon, daemons: []int{parent, daemon, h.PID}}
	if h.HelperPID > 0 {
		ps.daemons = append(ps.daemons, h.HelperPID)
	}
	ps.roots = ps.daemons
	return ps, nil
}

// prepareFloors unpacks the busybox image the containers run into a
// bundle owned by the crib user and starts a helper per OCI runtime (runc,
// and crun where installed) inside crib's namespaces as that user.
func prepareFloors(f runFlags, reg *registry, u *user.User, uid, gid int) (floorSet, error) {
	dir := filepath.Join(f.work, "floor")
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	repo, tag, _ := strings.Cut(smallImage, ":")
	if err := reg.extractImage(repo, tag, rootfs); err != nil {
		return nil, err
	}
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chown floor bundle: %w: %s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	runtimes := [][2]string{{"runc", f.runc}}
	if _, err := os.Stat(f.crun); err == nil {
		runtimes = append(runtimes, [2]string{"crun", f.crun})
	}
	floors := floorSet{}
	for _, rt := range runtimes {
		// One bundle per runtime: each writes its own config.json.
		bundle := filepath.Join(f.work, "floor-"+rt[0])
		if err := os.MkdirAll(bundle, 0o755); err != nil {
			return floors, err
		}
		if err := os.Chown(bundle, uid, gid); err != nil {
			return floors, err
		}
		state := fmt.Sprintf("/run/user/%d/crib-bench-floor-%s", uid, rt[0])
		os.RemoveAll(state)
		if err := os.MkdirAll(state, 0o700); err != nil {
			return floors, err
		}
		if err := os.Chown(state, uid, gid); err != nil {
			return floors, err
		}
		argv := []string{"setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups",
			"env", "-i", "HOME=" + u.HomeDir, "USER=" + u.Username, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
			fmt.Sprintf("XDG_RUNTIME_DIR=/run/user/%d", uid),
			f.cribBin, "unshare", "--runroot", f.cribRunroot, "--",
			self, "floor", "-dir", bundle, "-rootfs", rootfs, "-state", state, "-runtime", rt[1], "-cgroup-procs", f.cgroupProcs}
		c, err := startFloor(argv)
		if err != nil {
			return floors, fmt.Errorf("%s floor: %w", rt[0], err)
		}
		floors[rt[0]] = c
	}
	return floors, nil
}

// applyGoals attaches issues 8's and 16's goals to the figures they judge.
func applyGoals(figs []figure, notes map[string]string, pods int) []figure {
	for i := range figs {
		f := &figs[i]
		switch {
		case f.Name == "RunPodSandbox":
			f.Goal = 0.5
		case f.Name == "create+start":
			f.Goal, f.FloorGoal = 0.6, 1.3
		case strings.HasSuffix(f.Name, runcRowSuffix):
			// For comparison only: the goals judge the default handler.
		case f.Name == "ExecSync":
			f.Goal = 0.6
		case f.Name == "pod stop+remove":
			f.Goal = 0.3
		case f.Name == "CreateContainer", f.Name == "RemoveContainer":
			f.Goal = 1
		case f.Name == "whole lifecycle":
			f.Goal = 0.5
		case f.Name == "idle PSS, fresh", f.Name == "idle PSS, after the run":
			// PSS: the pages crib's processes share (one binary) count once.
			f.Goal = 0.5
		case f.Name == "idle PSS growth over the run":
			f.Limit = 10
		case strings.HasPrefix(f.Name, "helper PSS per pod"):
			f.Limit = 1
		case strings.HasPrefix(f.Name, "PullImage"):
			f.Goal = 0.8
		case strings.HasPrefix(f.Name, "churn"):
			f.HigherIsBetter = true
		}
		if n, ok := notes[f.Name]; ok {
			f.Note = n
		}
	}
	return figs
}

func writeResults(ctx context.Context, out string, b *bench, figs []figure, took time.Duration) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	versions := map[string]string{}
	for _, s := range []*subject{b.crib, b.ctrd} {
		versions[s.name] = s.version(ctx)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# crib vs containerd: CRI benchmark\n\n")
	fmt.Fprintf(&md, "%s; %s (rootless, default handler %s) vs %s (rootful, runc, CNI bridge); floor: the handler's runtime alone (`run -d`, `exec`, kill+delete) as the crib user in crib's namespaces; rows marked (runc handler) are crib's pods asking for runc, against runc's floor. "+
		"%d iterations per latency figure (after 2 warm-up rounds), %d small and %d big pulls, %d pods, churn windows of %s. Run took %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), versions["crib"], b.cribDefault, versions["containerd"],
		b.iterations, b.smallPulls, b.bigPulls, b.pods, b.churnFor, took.Round(time.Second))
	writeTable(&md, figs)
	fmt.Fprintf(&md, "\nGoals: %s\n", goalSummary(figs))
	if err := os.WriteFile(filepath.Join(out, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(map[string]any{"versions": versions, "figures": figs}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "results.json"), js, 0o644); err != nil {
		return err
	}
	svg, err := os.Create(filepath.Join(out, "chart.svg"))
	if err != nil {
		return err
	}
	writeChart(svg, "crib (rootless) vs containerd 1.6 (rootful): CRI medians", chartFigures(figs))
	if err := svg.Close(); err != nil {
		return err
	}
	fmt.Print(md.String())
	return nil
}

// chartFigures leaves out the figures that repeat others (RSS beside PSS,
// the single RPCs that make up a derived pair).
func chartFigures(figs []figure) []figure {
	var out []figure
	for _, f := range figs {
		if strings.Contains(f.Name, "RSS per pod") || strings.Contains(f.Name, "growth") ||
			strings.Contains(f.Name, "server alone") || strings.HasPrefix(f.Name, "idle RSS") {
			continue
		}
		out = append(out, f)
	}
	return out
}

func goalSummary(figs []figure) string {
	var met, missed []string
	for _, f := range figs {
		if ok, has := f.met(); has {
			if ok {
				met = append(met, f.Name)
			} else {
				missed = append(missed, f.Name)
			}
		}
	}
	return fmt.Sprintf("met %d (%s); missed %d (%s)", len(met), strings.Join(met, "; "), len(missed), strings.Join(missed, "; "))
}
