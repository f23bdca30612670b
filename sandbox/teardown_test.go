package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// loggingPlugins puts, in a fresh plugin dir, a wrapper for each real CNI
// plugin that logs "COMMAND plugin" before running it, and returns the dir
// and a function reading the log (and emptying it).
func loggingPlugins(t *testing.T, real string) (string, func() []string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(t.TempDir(), "cni.log")
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		script := fmt.Sprintf("#!/bin/sh\necho \"$CNI_COMMAND %s\" >> %s\nexec %s \"$@\"\n", p, log, filepath.Join(real, p))
		if err := os.WriteFile(filepath.Join(dir, p), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, func() []string {
		b, _ := os.ReadFile(log)
		os.Remove(log)
		return strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
	}
}

// A Remove after a finished Stop runs no CNI plugin again (a second DEL
// costs as much as the first); a Remove after a Stop that failed midway
// detaches the network itself. A pod without port mappings is not run
// through portmap on DEL.
func TestRemoveAfterStopSkipsWhatStopDid(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	dir, calls := loggingPlugins(t, opts.CNIPluginDirs[0])
	opts.CNIPluginDirs = []string{dir}
	ports := &recordingPorts{}
	opts.HostPorts = ports
	m := newTestManager(t, opts)
	ctx := context.Background()

	mustCreate(t, m, "done", podConfig("done"))
	calls()
	if err := m.Stop(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	got := calls()
	if !slices.Contains(got, "DEL bridge") {
		t.Errorf("Stop ran %q, want a bridge DEL", got)
	}
	if slices.Contains(got, "DEL portmap") {
		t.Errorf("Stop of a pod without port mappings ran portmap: %q", got)
	}
	if err := m.Remove(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	if got := calls(); len(got) > 0 {
		t.Errorf("Remove after a finished Stop ran CNI plugins again: %v", got)
	}

	sb := mustCreate(t, m, "cut", podConfig("cut"))
	calls()
	ports.failUnexpose = true
	if err := m.Stop(ctx, "cut"); err == nil {
		t.Fatal("Stop with a failing host-port removal succeeded")
	}
	calls()
	if err := m.Remove(ctx, "cut"); err != nil {
		t.Fatal(err)
	}
	if got := calls(); !slices.Contains(got, "DEL bridge") {
		t.Errorf("Remove after a Stop cut short ran %v, want the network detached again", got)
	}
	if n := len(leaseFiles(t, m)); n != 0 {
		t.Errorf("%d leases left", n)
	}
	if rules := podRules(t, sb.ID); len(rules) > 0 {
		t.Errorf("rules left: %v", rules)
	}
}
