package memtrim

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIdler trims into a channel, with the resident set rss reports.
func fakeIdler(rss *atomic.Int64) (*Idler, chan struct{}) {
	trims := make(chan struct{}, 10)
	i := NewIdler(slog.New(slog.NewTextHandler(io.Discard, nil)))
	i.quiet = time.Millisecond
	i.trim = func() { trims <- struct{}{} }
	i.resident = func() (int64, error) { return rss.Load(), nil }
	return i, trims
}

func expectTrim(t *testing.T, trims chan struct{}, want bool, why string) {
	t.Helper()
	// Much longer than quiet: the trim is due long before.
	select {
	case <-trims:
		if !want {
			t.Fatalf("trimmed %s", why)
		}
	case <-time.After(200 * time.Millisecond):
		if want {
			t.Fatalf("no trim %s", why)
		}
	}
}

func TestIdlerTrimsAfterWork(t *testing.T) {
	var rss atomic.Int64
	rss.Store(30 << 20)
	i, trims := fakeIdler(&rss)
	defer i.Stop()

	expectTrim(t, trims, false, "during start-up")
	i.End() // start-up done
	expectTrim(t, trims, true, "after start-up")

	i.Begin()
	rss.Add(5 << 20)
	expectTrim(t, trims, false, "with a call in flight")
	i.End()
	expectTrim(t, trims, true, "after a burst that grew the process")

	i.Begin()
	rss.Add(minGrowth / 2)
	i.End()
	expectTrim(t, trims, false, "after calls that grew the process by less than minGrowth")

	i.Stop()
	i.Begin()
	rss.Add(5 << 20)
	i.End()
	expectTrim(t, trims, false, "once stopped")
}

func TestNilIdler(t *testing.T) {
	var i *Idler
	i.Begin()
	i.End()
	i.Stop()
}
