package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const sampleReport = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" failures="1">
  <testsuite name="CRI validation" tests="5">
    <testcase name="[BeforeSuite]" status="passed"></testcase>
    <testcase name="[It] [k8s.io] Runtime info should return version info [Conformance]" status="passed"></testcase>
    <testcase name="[It] [k8s.io] Image Manager should pull" status="failed"><failure message="boom">x</failure></testcase>
    <testcase name="[It] [k8s.io] AppArmor should enforce" status="skipped"><skipped message="no apparmor"></skipped></testcase>
    <testcase name="[It] [k8s.io] Pods should run" status="passed"></testcase>
  </testsuite>
</testsuites>`

func TestParseReport(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "junit.xml")
	os.WriteFile(path, []byte(sampleReport), 0o644)
	r, err := parseReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Passed) != 2 || len(r.Failed) != 1 || len(r.Skipped) != 1 {
		t.Fatalf("got %+v", r)
	}
	if !slices.Contains(r.Passed, "[k8s.io] Pods should run") || strings.HasPrefix(r.Failed[0], "[It]") {
		t.Fatalf("names not normalized: %+v", r)
	}
}

func TestBaselineRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "baseline.txt")
	if err := writeBaseline(path, "host", []string{"inside\tB"}, []string{"A", "C"}); err != nil {
		t.Fatal(err)
	}
	mine, others, err := readBaseline(path, "host")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(mine, []string{"A", "C"}) || !slices.Equal(others, []string{"inside\tB"}) {
		t.Fatalf("mine %v others %v", mine, others)
	}
	os.WriteFile(path, []byte("no tab here\n"), 0o644)
	if _, _, err := readBaseline(path, "host"); err == nil {
		t.Fatal("malformed baseline accepted")
	}
}
