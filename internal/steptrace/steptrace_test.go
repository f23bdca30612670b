package steptrace

import (
	"context"
	"testing"
	"time"
)

func TestMarkWithoutTraceDoesNothing(t *testing.T) {
	Mark(context.Background(), "x") // must not panic
}

func TestStepsAddUpAndKeepFirstOrder(t *testing.T) {
	_, tr := Start(context.Background())
	base := tr.start
	tr.mark("a", base.Add(2*time.Millisecond))
	tr.mark("b", base.Add(5*time.Millisecond))
	tr.mark("a", base.Add(6*time.Millisecond))
	tr.mu.Lock()
	got := append([]Step(nil), tr.steps...)
	tr.mu.Unlock()
	want := []Step{{"a", 3 * time.Millisecond}, {"b", 3 * time.Millisecond}}
	if len(got) != len(want) {
		t.Fatalf("steps = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestLogAttrs(t *testing.T) {
	ctx, tr := Start(context.Background())
	Mark(ctx, "image volumes")
	attrs := tr.LogAttrs()
	if attrs[0].Key != "total_us" {
		t.Errorf("first attr = %q, want total_us", attrs[0].Key)
	}
	if attrs[1].Key != "step_image_volumes_us" {
		t.Errorf("step attr = %q, want step_image_volumes_us", attrs[1].Key)
	}
}
