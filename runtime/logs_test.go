package runtime

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
)

// criLogLine is the CRI log format the kubelet parses.
var criLogLine = regexp.MustCompile(`^(\S+) (stdout|stderr) ([PF]) (.*)$`)

func TestLogsCRIFormat(t *testing.T) {
	e := newEnv(t, false)
	c := e.run("logs", "sh", "-c", "echo full; printf part; sleep 0.3; echo ial; echo oops >&2")
	e.waitState(c.ID, StateExited, 10*time.Second)
	data, err := os.ReadFile(c.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	type line struct{ stream, tag, msg string }
	var got []line
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		m := criLogLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a CRI log line: %q", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Errorf("timestamp %q: %v", m[1], err)
		}
		got = append(got, line{m[2], m[3], m[4]})
	}
	want := []line{{"stdout", "F", "full"}, {"stdout", "P", "part"}, {"stdout", "F", "ial"}, {"stderr", "F", "oops"}}
	if len(got) != len(want) {
		t.Fatalf("log lines %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestLogsReopen moves the log away as the kubelet's rotation does; after
// ReopenLog the container writes to a new file at the log path.
func TestLogsReopen(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	c := e.run("reopen", "sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done")
	e.waitLog(c, "line 1\n")
	rotated := c.LogPath + ".1"
	if err := os.Rename(c.LogPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := e.m.ReopenLog(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	e.waitLog(c, "stdout F line")
	old, _ := os.ReadFile(rotated)
	cur, _ := os.ReadFile(c.LogPath)
	if !strings.Contains(string(old), "line 0") || strings.Contains(string(cur), "line 0\n") {
		t.Errorf("rotation mixed the files:\nold:\n%s\nnew:\n%s", old, cur)
	}
	if err := e.m.Stop(ctx, c.ID, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.m.ReopenLog(ctx, c.ID); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("reopen of a stopped container's log: %v", err)
	}
}
