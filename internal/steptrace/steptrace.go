// Package steptrace times the steps of one operation (a CRI call) and
// hands the durations to whoever started the trace. It owns the recorder
// only: where the durations go (a debug log line, a benchmark's table) is
// the caller's, and a context without a trace makes every mark a no-op,
// so packages below cri can mark steps without knowing whether anyone
// listens.
//
// A mark closes the step that ran since the previous mark (or since the
// start); the same step name may be marked more than once, and its
// durations add up.
package steptrace

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

type key struct{}

// Step is one named part of an operation and the time it took.
type Step struct {
	Name string
	Took time.Duration
}

// Trace records the steps of one operation. It is safe for concurrent
// marks, though steps are meant to follow each other.
type Trace struct {
	mu    sync.Mutex
	start time.Time
	last  time.Time
	steps []Step
}

// Start returns a context carrying a new trace, and the trace.
func Start(ctx context.Context) (context.Context, *Trace) {
	now := time.Now()
	t := &Trace{start: now, last: now}
	return context.WithValue(ctx, key{}, t), t
}

// Mark closes the step named name: the time since the previous mark is
// added to it. Without a trace in ctx it does nothing.
func Mark(ctx context.Context, name string) {
	t, _ := ctx.Value(key{}).(*Trace)
	if t == nil {
		return
	}
	t.mark(name, time.Now())
}

func (t *Trace) mark(name string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := now.Sub(t.last)
	t.last = now
	for i := range t.steps {
		if t.steps[i].Name == name {
			t.steps[i].Took += d
			return
		}
	}
	t.steps = append(t.steps, Step{Name: name, Took: d})
}

// Steps returns the marked steps in the order they were first marked, and
// the operation's total so far; the time since the last mark, when any, is
// reported as step "rest".
func (t *Trace) Steps() ([]Step, time.Duration) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]Step(nil), t.steps...)
	if rest := now.Sub(t.last); len(out) > 0 && rest > 0 {
		out = append(out, Step{Name: "rest", Took: rest})
	}
	return out, now.Sub(t.start)
}

// LogAttrs renders the steps as slog attributes, durations in
// microseconds: "total_us" first, then "step_<name>_us" per step, so a
// log reader can aggregate them by name.
func (t *Trace) LogAttrs() []slog.Attr {
	steps, total := t.Steps()
	attrs := make([]slog.Attr, 0, len(steps)+1)
	attrs = append(attrs, slog.Int64("total_us", total.Microseconds()))
	for _, s := range steps {
		attrs = append(attrs, slog.Int64("step_"+attrName(s.Name)+"_us", s.Took.Microseconds()))
	}
	return attrs
}

// attrName makes a step name usable as one token of a logfmt key.
func attrName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
