package sandbox

import (
	"context"
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// SELinux is off on this machine, so these tests drive the allocation
// through fakeLabels, which keeps go-selinux's contract.
func TestSELinuxLevels(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	labels := opts.Labels.(*fakeLabels)
	m := newTestManager(t, opts)
	ctx := context.Background()
	a := mustCreate(t, m, "la", hostNetwork(podConfig("la")))
	b := mustCreate(t, m, "lb", hostNetwork(podConfig("lb")))
	if levelOf(a.ProcessLabel) == "" || levelOf(a.ProcessLabel) == levelOf(b.ProcessLabel) {
		t.Fatalf("levels %q and %q must differ", a.ProcessLabel, b.ProcessLabel)
	}
	if levelOf(a.MountLabel) != levelOf(a.ProcessLabel) {
		t.Fatalf("mount label %q does not match %q", a.MountLabel, a.ProcessLabel)
	}

	given := hostNetwork(podConfig("lg"))
	given.Linux.SecurityContext.SelinuxOptions = &runtimeapi.SELinuxOption{Level: "s0:c100,c200", Type: "spc_t"}
	g := mustCreate(t, m, "lg", given)
	if g.ProcessLabel != "system_u:system_r:spc_t:s0:c100,c200" {
		t.Fatalf("given level not honoured: %q", g.ProcessLabel)
	}

	if err := m.Remove(ctx, "la"); err != nil {
		t.Fatal(err)
	}
	c := mustCreate(t, m, "lc", hostNetwork(podConfig("lc")))
	if levelOf(c.ProcessLabel) != levelOf(a.ProcessLabel) {
		t.Fatalf("released level %q not reused: got %q", levelOf(a.ProcessLabel), c.ProcessLabel)
	}

	before := labels.used()
	m.beforeStep = func(s string) error {
		if s == "ready" {
			return errors.New("injected")
		}
		return nil
	}
	if _, err := m.Create(ctx, "ld", hostNetwork(podConfig("ld")), ""); err == nil {
		t.Fatal("create did not fail")
	}
	m.beforeStep = nil
	if after := labels.used(); len(after) != len(before) {
		t.Fatalf("a failed create kept its level: %v → %v", before, after)
	}
}
