package doctor

import (
	"strings"
	"testing"
)

// The cgroup check defers to what the running daemon recorded, so that
// `crib doctor` never says cgroups are fine while pods run unconfined (and
// the reverse).
func TestCgroupCheckFollowsDaemon(t *testing.T) {
	const own = "/user.slice/user-1000.slice/user@1000.service/app.slice/crib.service"
	tests := []struct {
		name       string
		delegated  bool   // what the host prediction sees
		file       string // cgroups.json; "" = no daemon running
		wantStatus Status
		wantDetail string
	}{
		{"no daemon: the prediction", true, "", OK, "is delegated to alice"},
		{"daemon unconfined although delegated", true,
			`{"manager":"none","version":0,"confined":false,"reason":"cgroup v2: crib.service holds processes"}`,
			Warn, "the running crib confines no pod (no cpu, memory or pids limits): cgroup v2: crib.service holds processes"},
		{"daemon confined in its scope, the shell's cgroup not delegated", false,
			`{"manager":"cgroupfs","version":2,"confined":true,"controllers":["cpu","memory","pids"],"reason":"cgroup v2 delegated at /sys/fs/cgroup/x/pods (controllers: cpu memory pids)"}`,
			OK, "the running crib uses cgroupfs: cgroup v2 delegated at /sys/fs/cgroup/x/pods"},
		{"torn file: the prediction", true, `{"manager":`, OK, "is delegated to alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.delegated {
				f.cgroupV2(own, "cpu memory pids", true)
			} else {
				// A login shell's scope, which root owns.
				f.cgroupV2("/user.slice/user-1000.slice/session-1.scope", "cpu memory pids", false)
			}
			if tt.file != "" {
				f.write(f.cfg.RunRoot+"/"+CgroupsFileName, tt.file, 0o600)
			}
			c := f.check(IDCgroup)
			rep := Run(f.h, f.cfg)
			if sum := cgroupSummary(rep.Features); tt.file != "" && tt.wantStatus == OK && !strings.Contains(sum, "usable controllers: cpu memory pids") {
				t.Errorf("summary %q disagrees with the running crib", sum)
			}
			if c.Status != tt.wantStatus || !strings.Contains(c.Detail, tt.wantDetail) {
				t.Errorf("got %v %q, want %v containing %q", c.Status, c.Detail, tt.wantStatus, tt.wantDetail)
			}
		})
	}
}

func TestWithCgroupUse(t *testing.T) {
	rep := Report{Checks: []Check{{ID: IDRunc, Detail: "runc"}, {ID: IDCgroup, Detail: "delegated"}}}
	got := WithCgroupUse(rep, CgroupUse{Manager: "none", Reason: "not delegated"})
	if got.Checks[1].Status != Warn || !strings.Contains(got.Checks[1].Detail, "confines no pod") {
		t.Errorf("cgroup check %+v", got.Checks[1])
	}
	if rep.Checks[1].Detail != "delegated" || got.Checks[0] != rep.Checks[0] {
		t.Errorf("the input report was changed or another check touched: %+v", rep.Checks)
	}
}
