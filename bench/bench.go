package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// bench holds both subjects and the floor, and collects figures. Every
// phase alternates the order of the subjects per iteration so machine
// noise falls on both.
type bench struct {
	crib, ctrd *subject
	// cribRunc is crib with pods asking for the runc handler, nil when
	// runc is crib's default already.
	cribRunc    *subject
	cribDefault string // crib's default handler, whose floor its rows compare with
	floors      floorSet
	smallImage  string // what containers run; also the small pull
	bigImage    string // the generated 100 MB, 5-layer image
	iterations  int
	smallPulls  int
	bigPulls    int
	pods        int
	churnFor    time.Duration
	log         *slog.Logger

	figs map[string]*figure
	// order keeps figures in the order they are first recorded.
	order []string
	notes map[string]string
}

func (b *bench) fig(name, unit string) *figure {
	if f, ok := b.figs[name]; ok {
		return f
	}
	f := &figure{Name: name, Unit: unit}
	b.figs[name] = f
	b.order = append(b.order, name)
	return f
}

func (b *bench) record(s *subject, name, unit string, v float64) {
	f := b.fig(name, unit)
	if s == b.crib {
		f.Crib = append(f.Crib, v)
	} else {
		f.Containerd = append(f.Containerd, v)
	}
}

func (b *bench) recordFloor(name, unit string, v float64) {
	f := b.fig(name, unit)
	f.Floor = append(f.Floor, v)
}

// runcRowSuffix marks the rows of crib's pods on the runc handler (when
// runc is not the default), compared with runc's floor.
const runcRowSuffix = " (runc handler)"

// floorSet holds a floor helper per OCI runtime name.
type floorSet map[string]*floorClient

func (fs floorSet) close() {
	for _, f := range fs {
		f.close()
	}
}

// floorRows are the figures a floor cycle feeds, by its operations.
var floorRows = [][2]string{{"run", "create+start"}, {"exec", "ExecSync"}, {"stop", "container stop+remove"}}

// recordFloorCycle files a cycle of runtime rt's floor under crib's rows
// when rt is crib's default handler, and under the runc-handler rows for
// runc otherwise.
func (b *bench) recordFloorCycle(rt string, d map[string]time.Duration) {
	for _, r := range floorRows {
		switch {
		case rt == b.cribDefault:
			b.recordFloor(r[1], "ms", ms(d[r[0]]))
		case rt == "runc" && b.cribRunc != nil:
			b.recordFloor(r[1]+runcRowSuffix, "ms", ms(d[r[0]]))
		}
	}
}

// subjects returns both runtimes, the first one alternating with i.
func (b *bench) subjects(i int) []*subject {
	if i%2 == 0 {
		return []*subject{b.crib, b.ctrd}
	}
	return []*subject{b.ctrd, b.crib}
}

func (b *bench) figures() []figure {
	out := make([]figure, 0, len(b.order))
	for _, n := range b.order {
		out = append(out, *b.figs[n])
	}
	return out
}

// pulls times PullImage of the small and the big image, each removed from
// the runtime first so nothing is cached.
func (b *bench) pulls(ctx context.Context) error {
	for _, p := range []struct {
		name, ref string
		n         int
	}{{"PullImage small (busybox)", b.smallImage, b.smallPulls}, {"PullImage 100 MB, 5 layers", b.bigImage, b.bigPulls}} {
		b.log.Info("pulls", "image", p.ref, "iterations", p.n)
		for i := 0; i < p.n; i++ {
			for _, s := range b.subjects(i) {
				if err := s.removeImage(ctx, p.ref); err != nil {
					return err
				}
				d, err := timed(func() error { return s.pull(ctx, p.ref) })
				if err != nil {
					return err
				}
				b.record(s, p.name, "ms", ms(d))
			}
		}
	}
	for _, s := range []*subject{b.crib, b.ctrd} {
		if err := s.removeImage(ctx, b.bigImage); err != nil {
			return err
		}
	}
	return nil
}

var lifecycleOps = []string{"RunPodSandbox", "CreateContainer", "StartContainer", "ExecSync",
	"StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"}

// lifecycle runs one pod through every RPC a kubelet makes for it and
// returns each RPC's duration.
func (b *bench) lifecycle(ctx context.Context, s *subject, name string) (map[string]time.Duration, error) {
	d := map[string]time.Duration{}
	cfg := s.podConfig(name)
	var id, ctr string
	steps := []struct {
		op string
		f  func() error
	}{
		{"RunPodSandbox", func() (err error) { id, err = s.runPod(ctx, cfg); return }},
		{"CreateContainer", func() (err error) {
			ctr, err = s.createContainer(ctx, id, containerConfig(b.smallImage), cfg)
			return
		}},
		{"StartContainer", func() error { return s.startContainer(ctx, ctr) }},
		{"ExecSync", func() error { return s.execSync(ctx, ctr, "true") }},
		{"StopContainer", func() error { return s.stopContainer(ctx, ctr, 10) }},
		{"RemoveContainer", func() error { return s.removeContainer(ctx, ctr) }},
		{"StopPodSandbox", func() error { return s.stopPod(ctx, id) }},
		{"RemovePodSandbox", func() error { return s.removePodOnly(ctx, id) }},
	}
	for _, st := range steps {
		t, err := timed(st.f)
		if err != nil {
			if id != "" {
				s.removePod(ctx, id)
			}
			return nil, fmt.Errorf("%s %s of pod %s: %w", s.name, st.op, name, err)
		}
		d[st.op] = t
	}
	return d, nil
}

func (b *bench) floorCycle(rt, id string) (map[string]time.Duration, error) {
	d := map[string]time.Duration{}
	for _, op := range []string{"run", "exec", "stop"} {
		t, err := b.floors[rt].op(op, id)
		if err != nil {
			return nil, fmt.Errorf("%s floor: %w", rt, err)
		}
		d[op] = t
	}
	return d, nil
}

// slot is one turn of a latency round: a runtime's pod lifecycle, or a
// floor's cycle.
type slot struct {
	s     *subject
	floor string
}

// latencies measures the pod lifecycle of both runtimes (crib on its
// default handler and, when that is not runc, on runc too) and the
// floors, after warm-up rounds that are not counted (containerd pulls its
// pause image, crib sets its network up, page cache fills).
func (b *bench) latencies(ctx context.Context) error {
	const warmup = 2
	b.log.Info("pod lifecycle", "iterations", b.iterations)
	// The table lists the default handler's rows before the runc ones.
	for _, r := range floorRows {
		b.fig(r[1], "ms")
	}
	for i := 0; i < warmup+b.iterations; i++ {
		counted := i >= warmup
		for k, sl := range b.rotation(i) {
			if sl.s == nil {
				d, err := b.floorCycle(sl.floor, fmt.Sprintf("floor-%s-%d", sl.floor, i))
				if err != nil {
					return err
				}
				if counted {
					b.recordFloorCycle(sl.floor, d)
				}
				continue
			}
			d, err := b.lifecycle(ctx, sl.s, fmt.Sprintf("lc-%d-%d", i, k))
			if err != nil {
				return err
			}
			if counted {
				b.recordLifecycle(sl.s, d)
			}
		}
	}
	b.compareRuncRows()
	return nil
}

func (b *bench) recordLifecycle(who *subject, d map[string]time.Duration) {
	if who == b.cribRunc {
		f := func(name string, v time.Duration) {
			b.fig(name+runcRowSuffix, "ms").Crib = append(b.fig(name+runcRowSuffix, "ms").Crib, ms(v))
		}
		f("create+start", d["CreateContainer"]+d["StartContainer"])
		f("ExecSync", d["ExecSync"])
		f("container stop+remove", d["StopContainer"]+d["RemoveContainer"])
		return
	}
	for _, op := range lifecycleOps {
		b.record(who, op, "ms", ms(d[op]))
	}
	b.record(who, "create+start", "ms", ms(d["CreateContainer"]+d["StartContainer"]))
	b.record(who, "container stop+remove", "ms", ms(d["StopContainer"]+d["RemoveContainer"]))
	b.record(who, "pod stop+remove", "ms", ms(d["StopPodSandbox"]+d["RemovePodSandbox"]))
	b.record(who, "whole pod teardown", "ms", ms(d["StopContainer"]+d["RemoveContainer"]+d["StopPodSandbox"]+d["RemovePodSandbox"]))
	var whole time.Duration
	for _, op := range []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer",
		"RemoveContainer", "StopPodSandbox", "RemovePodSandbox"} {
		whole += d[op]
	}
	b.record(who, "whole lifecycle", "ms", ms(whole))
}

// compareRuncRows gives the runc-handler rows containerd's figures of the
// same rounds (containerd runs runc too).
func (b *bench) compareRuncRows() {
	if b.cribRunc == nil {
		return
	}
	for _, r := range floorRows {
		if f, ok := b.figs[r[1]+runcRowSuffix]; ok {
			f.Containerd = append(f.Containerd, b.figs[r[1]].Containerd...)
		}
	}
}

// rotation orders the runtimes and the floors differently each iteration.
func (b *bench) rotation(i int) []slot {
	all := []slot{{s: b.crib}, {s: b.ctrd}}
	if b.cribRunc != nil {
		all = append(all, slot{s: b.cribRunc})
	}
	for _, name := range []string{"crun", "runc"} {
		if _, ok := b.floors[name]; ok {
			all = append(all, slot{floor: name})
		}
	}
	r := i % len(all)
	return append(all[r:], all[:r]...)
}

// idleMemory records the resident set of each runtime with no pod.
func (b *bench) idleMemory(when string) error {
	for _, s := range []*subject{b.crib, b.ctrd} {
		if others, err := binaryShared(s.procs.main, s.procs.daemons); err != nil {
			return err
		} else if len(others) > 0 {
			return fmt.Errorf("%s: processes %v (%s) run the daemons' binary file too, so the daemons' PSS would be understated", s.name, others, commCounts(others))
		}
		all, err := sumMemory(s.procs.daemons)
		if err != nil {
			return err
		}
		b.record(s, "idle RSS, "+when, "MiB", kib(all.RSSKiB))
		if err := b.noteProcesses(s, "idle RSS, "+when); err != nil {
			return err
		}
		b.record(s, "idle PSS, "+when, "MiB", kib(all.PSSKiB))
		b.record(s, "idle anonymous PSS (heap, stacks), "+when, "MiB", kib(all.PSSAnonKiB))
		if fresh := b.fig("idle PSS, fresh", "MiB"); when != "fresh" {
			// How far the run left memory above the fresh idle figure.
			before := fresh.Containerd
			if s == b.crib {
				before = fresh.Crib
			}
			if len(before) > 0 && before[0] > 0 {
				b.record(s, "idle PSS growth over the run", "%", 100*(kib(all.PSSKiB)-before[0])/before[0])
			}
		}
		one, err := smapsRollup(s.procs.main)
		if err != nil {
			return err
		}
		b.record(s, "idle RSS of the CRI server alone, "+when, "MiB", kib(one.RSSKiB))
	}
	return nil
}

func kib(v int) float64 { return float64(v) / 1024 }

// noteProcesses adds "name RSS/PSS" of each daemon process to a figure's note.
func (b *bench) noteProcesses(s *subject, figure string) error {
	var parts []string
	for _, p := range s.procs.daemons {
		m, err := smapsRollup(p)
		if err != nil {
			return err
		}
		parts = append(parts, fmt.Sprintf("%s %.1f/%.1f/%.1f", comm(p), kib(m.RSSKiB), kib(m.PSSKiB), kib(m.PSSAnonKiB)))
	}
	b.addNote(figure, fmt.Sprintf("%s (RSS/PSS/anonymous PSS MiB): %s", s.name, strings.Join(parts, ", ")))
	return nil
}

func (b *bench) addNote(figure, note string) {
	if b.notes[figure] != "" {
		note = b.notes[figure] + "; " + note
	}
	b.notes[figure] = note
}

// scale runs b.pods pods (one container each) on both runtimes at once,
// records per-pod helper memory at 10 pods and at b.pods, then times
// ListContainers and ListContainerStats over them, then removes them.
func (b *bench) scale(ctx context.Context) error {
	base := map[*subject]memory{}
	for _, s := range []*subject{b.crib, b.ctrd} {
		m, err := sumMemory(s.procs.daemons)
		if err != nil {
			return err
		}
		base[s] = m
	}
	pods := map[*subject][]string{}
	defer func() {
		for s, ids := range pods {
			for _, id := range ids {
				if err := s.removePod(context.WithoutCancel(ctx), id); err != nil {
					b.log.Error("removing a scale pod", "err", err)
				}
			}
		}
	}()
	marks := []int{10, b.pods}
	if b.pods <= 10 {
		marks = []int{b.pods}
	}
	for _, mark := range marks {
		b.log.Info("scale", "pods", mark)
		for i := len(pods[b.crib]); i < mark; i++ {
			for _, s := range b.subjects(i) {
				p, err := s.startPod(ctx, fmt.Sprintf("scale-%d", i), b.smallImage)
				if p.id != "" {
					pods[s] = append(pods[s], p.id)
				}
				if err != nil {
					return err
				}
			}
		}
		time.Sleep(time.Second) // let monitors and shims settle
		for _, s := range []*subject{b.crib, b.ctrd} {
			if err := b.podMemory(s, mark, base[s]); err != nil {
				return err
			}
		}
	}
	b.log.Info("list and stats", "containers", b.pods, "iterations", b.iterations)
	for i := 0; i < b.iterations+1; i++ {
		for _, s := range b.subjects(i) {
			var n int
			d, err := timed(func() (err error) { n, err = s.listContainers(ctx); return })
			if err != nil {
				return fmt.Errorf("%s ListContainers: %w", s.name, err)
			}
			if n < b.pods {
				return fmt.Errorf("%s ListContainers returned %d containers, want at least %d", s.name, n, b.pods)
			}
			ds, err := timed(func() (err error) { n, err = s.listContainerStats(ctx); return })
			if err != nil {
				return fmt.Errorf("%s ListContainerStats: %w", s.name, err)
			}
			if n < b.pods {
				return fmt.Errorf("%s ListContainerStats returned %d, want at least %d", s.name, n, b.pods)
			}
			if i == 0 {
				continue // the first call warms caches
			}
			b.record(s, fmt.Sprintf("ListContainers (%d)", b.pods), "ms", ms(d))
			b.record(s, fmt.Sprintf("ListContainerStats (%d)", b.pods), "ms", ms(ds))
		}
	}
	return nil
}

// podMemory records the helper processes' memory per pod, and how much the
// runtime's own processes grew per pod.
func (b *bench) podMemory(s *subject, n int, base memory) error {
	helpers := s.procs.helpers()
	hm, err := sumMemory(helpers)
	if err != nil {
		return err
	}
	dm, err := sumMemory(s.procs.daemons)
	if err != nil {
		return err
	}
	per := func(v int) float64 { return kib(v) / float64(n) }
	b.record(s, fmt.Sprintf("helper PSS per pod, %d pods", n), "MiB", per(hm.PSSKiB))
	b.record(s, fmt.Sprintf("helper RSS per pod, %d pods", n), "MiB", per(hm.RSSKiB))
	b.record(s, fmt.Sprintf("daemon PSS growth per pod, %d pods", n), "MiB", per(dm.PSSKiB-base.PSSKiB))
	b.addNote(fmt.Sprintf("helper PSS per pod, %d pods", n), fmt.Sprintf("%s: %s", s.name, commCounts(helpers)))
	return nil
}

// churn runs clients concurrent loops of (run pod, create and start a
// container, stop and remove the pod) for a window and records completed
// pods per second; windows go crib, containerd, containerd, crib.
func (b *bench) churn(ctx context.Context, clients int) error {
	name := fmt.Sprintf("churn, %d clients", clients)
	for w, s := range []*subject{b.crib, b.ctrd, b.ctrd, b.crib} {
		b.log.Info("churn", "runtime", s.name, "window", b.churnFor)
		rate, err := b.churnWindow(ctx, s, clients, w)
		if err != nil {
			return err
		}
		b.record(s, name, "pods/s", rate)
	}
	return nil
}

func (b *bench) churnWindow(ctx context.Context, s *subject, clients, window int) (float64, error) {
	var (
		mu    sync.Mutex
		done  int
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(b.churnFor)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				p, err := s.startPod(ctx, fmt.Sprintf("churn-%d-%d-%d", window, c, n), b.smallImage)
				if p.id != "" {
					if rerr := s.removePod(ctx, p.id); err == nil {
						err = rerr
					}
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					done++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(done) / time.Since(start).Seconds(), nil
}
