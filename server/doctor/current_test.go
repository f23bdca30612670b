package doctor

import (
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/config"
)

// TestCurrentHost runs every check on this machine. What it finds depends on
// the machine, so it only asserts that every check reports, once.
func TestCurrentHost(t *testing.T) {
	cfg := config.Default(config.CurrentEnv())
	cfg.Root = t.TempDir() // the overlay probe makes its scratch dir here
	rep := Run(CurrentHost(cfg), cfg)
	var got []string
	for _, c := range rep.Checks {
		got = append(got, c.ID)
		if c.Detail == "" {
			t.Errorf("check %s has no detail", c.ID)
		}
	}
	if strings.Join(got, " ") != strings.Join(CheckIDs(), " ") {
		t.Errorf("checks = %v, want %v", got, CheckIDs())
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
}
