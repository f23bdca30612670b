package doctor

import (
	"strings"
	"testing"
)

func TestRecoveryCheck(t *testing.T) {
	tests := []struct {
		name       string
		file       string // recovered.json content; "" = absent
		wantStatus Status
		wantDetail []string
	}{
		{"never started", "", OK, []string{"no record", "not started since boot"}},
		{"after a reboot", `{"at":"2026-11-27T01:02:03Z","containersLost":["c1","c2"],"podsNotReady":["p1"],"rootfsCleaned":["r1"]}`,
			OK, []string{"last start 2026-11-27T01:02:03Z", "2 lost (marked HostRestarted)", "1 made NotReady", "1 orphaned container filesystem"}},
		{"with leftovers", `{"at":"2026-11-27T01:02:03Z","podsCleaned":["p2"],"errors":["unmounting x: busy"]}`,
			Warn, []string{"1 pod leftover", "could not clean: unmounting x: busy"}},
		{"torn file", `{"at":`, OK, []string{"unreadable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.file != "" {
				f.write(f.cfg.RunRoot+"/"+RecoveryFileName, tt.file, 0o600)
			}
			c := f.check(IDRecovery)
			if c.Status != tt.wantStatus || c.Hard {
				t.Errorf("status %v hard %v, want %v and not hard", c.Status, c.Hard, tt.wantStatus)
			}
			for _, w := range tt.wantDetail {
				if !strings.Contains(c.Detail, w) {
					t.Errorf("detail %q lacks %q", c.Detail, w)
				}
			}
		})
	}
}

// TestHostSideCheck: rootless, a crib without crib-hostside beside it is
// a warning with the fix; as root the program is not needed.
func TestHostSideCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(*fixture)
		status  Status
		contain string
	}{
		{"beside crib", nil, OK, "/usr/local/bin/crib-hostside"},
		{"missing", func(f *fixture) { f.remove("/usr/local/bin/crib-hostside") }, Warn, "crib-hostside is missing"},
		{"not executable", func(f *fixture) { f.chmod("/usr/local/bin/crib-hostside", 0o644) }, Warn, "crib-hostside is missing"},
		{"unknown binary", func(f *fixture) { f.h.Executable = "" }, OK, "not checked"},
		{"rootful", func(f *fixture) { f.remove("/usr/local/bin/crib-hostside"); asRoot(f) }, OK, notNeeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			c := f.check(IDHostSide)
			if c.Status != tc.status || !strings.Contains(c.Detail, tc.contain) {
				t.Errorf("%v %q, want %v containing %q", c.Status, c.Detail, tc.status, tc.contain)
			}
			if c.Status == Warn && !strings.Contains(c.Fix, "make install") {
				t.Errorf("no fix: %q", c.Fix)
			}
		})
	}
}
