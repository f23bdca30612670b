package runtime

import (
	"testing"
	"time"
)

// TestOrderTimes: an exit file's coarse mtime never makes a container
// finish before it started; other times are kept as they are.
func TestOrderTimes(t *testing.T) {
	start := time.Date(2026, 12, 3, 18, 0, 0, 5_000_000, time.UTC)
	for _, tc := range []struct {
		name              string
		started, finished time.Time
		want              time.Time
	}{
		{"exit file a tick behind the start", start, start.Add(-3 * time.Millisecond), start},
		{"finished after the start", start, start.Add(time.Second), start.Add(time.Second)},
		{"never started (start error)", time.Time{}, start, start},
		{"still running", start, time.Time{}, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Container{StartedAt: tc.started, FinishedAt: tc.finished}
			c.orderTimes()
			if !c.FinishedAt.Equal(tc.want) || !c.StartedAt.Equal(tc.started) {
				t.Errorf("started %s finished %s, want started %s finished %s", c.StartedAt, c.FinishedAt, tc.started, tc.want)
			}
		})
	}
}
