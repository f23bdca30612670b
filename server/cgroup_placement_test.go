package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/runtime/cgroups"
	"github.com/crib-dev/crib/server/doctor"
	"github.com/crib-dev/crib/server/rootless"
)

func TestPlacementNames(t *testing.T) {
	a, b := scopeName("/run/user/1000/crib"), scopeName("/run/user/1001/crib")
	if a == b || a != scopeName("/run/user/1000/crib") {
		t.Errorf("scope names must be stable per runroot and differ between runroots: %q %q", a, b)
	}
	if !strings.HasPrefix(a, "crib-pods-") || !strings.HasSuffix(a, ".scope") {
		t.Errorf("scope name %q", a)
	}
	if got := cgroupPath("/sys/fs/cgroup/user.slice/u/pods"); got != "/user.slice/u/pods" {
		t.Errorf("cgroupPath = %q", got)
	}
}

func TestUnderServiceUnit(t *testing.T) {
	cases := []struct {
		invocation, own string
		want            bool
	}{
		{"abc", "/user.slice/user-1000.slice/user@1000.service/app.slice/crib.service", true},
		{"", "/user.slice/user-1000.slice/user@1000.service/app.slice/crib.service", false},
		{"abc", "/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope", false},
	}
	for _, c := range cases {
		t.Setenv("INVOCATION_ID", c.invocation)
		if got := underServiceUnit(c.own); got != c.want {
			t.Errorf("underServiceUnit(%q) with INVOCATION_ID=%q = %v", c.own, c.invocation, got)
		}
	}
}

// A configured manager "none" or cgroup parent is the operator's choice:
// the parent moves nothing and passes the setting on as it is.
func TestPlaceCgroupsKeepsConfiguredChoice(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, cg := range []config.Cgroup{{Manager: "none"}, {Manager: "auto", Parent: "/crib-u"}} {
		cfg := config.Config{RunRoot: t.TempDir(), Cgroup: cg}
		if got := placeCgroups(cfg, rootless.Holder{}, log); got != cg {
			t.Errorf("placeCgroups changed %+v into %+v", cg, got)
		}
	}
}

// The daemon records the manager it really uses, with the parent's
// placement, where crib doctor reads it.
func TestRecordCgroupUse(t *testing.T) {
	run := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pl := `{"mode":"split","pods":"/u/pods","reason":"split"}`
	if err := os.WriteFile(filepath.Join(run, cgroupPlacementFileName), []byte(pl), 0o600); err != nil {
		t.Fatal(err)
	}
	u := recordCgroupUse(run, cgroups.None(), "not delegated", log)
	data, err := os.ReadFile(filepath.Join(run, doctor.CgroupsFileName))
	if err != nil {
		t.Fatal(err)
	}
	var got doctor.CgroupUse
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Manager != "none" || got.Confined || got.Reason != "not delegated" || string(got.Placement) != pl || u.Manager != got.Manager {
		t.Errorf("recorded %s", data)
	}
	if _, err := os.Stat(filepath.Join(run, cgroupPlacementFileName)); !os.IsNotExist(err) {
		t.Errorf("the placement file is left in the runroot: %v", err)
	}
}
