// Package layering holds no product code: its test is the guard rail that
// keeps crib's calls flowing one way (cmd → server → server/rootless,
// server/streaming, server/doctor → cri → sandbox, runtime, storage →
// internal). It reads import lists from the source, so it needs neither
// the go command nor a build.
package layering

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/crib-dev/crib/"

// layers ranks each top-level area, lowest first. A package may import a
// package of a lower rank, or one under its own top-level folder; anything
// else reaches sideways or up. The longest matching prefix wins.
var layers = []struct {
	prefix string
	rank   int
}{
	{"internal/", 0},
	{"runtime/cgroups", 1},
	{"storage", 2},
	{"runtime", 2},
	{"sandbox", 2},
	{"cri", 3},
	// Below the daemon's wiring, beside each other: the rootless
	// bootstrap and host bridge, the streaming server, the host checks.
	{"server/rootless", 4},
	{"server/streaming", 4},
	{"server/doctor", 4},
	{"contrib/", 5},
	{"server", 5},
	{"cmd/", 6},
	{"bench", 7},
	{"conformance/", 7},
}

// ownFolders are packages under another's folder that are a room of
// their own: no sideways imports between them and their neighbours.
var ownFolders = []string{"runtime/cgroups", "server/rootless", "server/streaming", "server/doctor"}

// forbidden are imports the ranks would allow but a package's doc rules
// out: the streaming server reaches containers and pods through the
// interface the wiring passes in, and the rootless bootstrap knows
// nothing of CRI, pods, containers or images.
var forbidden = map[string][]string{
	"server/streaming": {"cri", "runtime", "sandbox", "storage"},
	"server/rootless":  {"cri", "runtime", "sandbox", "storage"},
}

func rankOf(pkg string) (int, bool) {
	best, rank := -1, 0
	for _, l := range layers {
		if pkg == strings.TrimSuffix(l.prefix, "/") || strings.HasPrefix(pkg, strings.TrimSuffix(l.prefix, "/")+"/") {
			if len(l.prefix) > best {
				best, rank = len(l.prefix), l.rank
			}
		}
	}
	return rank, best >= 0
}

func topFolder(pkg string) string {
	for _, own := range ownFolders {
		if pkg == own || strings.HasPrefix(pkg, own+"/") {
			return own
		}
	}
	if i := strings.IndexByte(pkg, '/'); i >= 0 {
		return pkg[:i]
	}
	return pkg
}

// isForbidden reports whether from's doc rules out importing to.
func isForbidden(from, to string) bool {
	for _, f := range forbidden[topFolder(from)] {
		if to == f || strings.HasPrefix(to, f+"/") {
			return true
		}
	}
	return false
}

// allowed reports whether package from may import package to.
func allowed(from, to string) bool {
	rf, okf := rankOf(from)
	rt, okt := rankOf(to)
	if !okf || !okt || isForbidden(from, to) {
		return false
	}
	if rt < rf {
		return true
	}
	return rt == rf && topFolder(from) == topFolder(to)
}

func TestAllowed(t *testing.T) {
	cases := []struct {
		from, to string
		want     bool
	}{
		{"cri", "runtime", true},
		{"server", "cri", true},
		{"server", "server/doctor", true},
		{"server", "server/rootless", true},
		{"server", "server/streaming", true},
		{"cmd/crib", "server/rootless", true},
		{"server/streaming", "internal/config", true},
		{"server/rootless", "internal/idmap", true},
		{"server/rootless", "server", false},
		{"server/streaming", "server", false},
		{"server/doctor", "server", false},
		{"server/streaming", "runtime", false},
		{"server/streaming", "sandbox", false},
		{"server/streaming", "server/rootless", false},
		{"server/rootless", "server/streaming", false},
		{"server/rootless", "sandbox", false},
		{"server/rootless", "cri", false},
		{"server/doctor", "internal/config", true},
		{"runtime", "runtime/cgroups", true},
		{"sandbox", "runtime/cgroups", true},
		{"runtime/oci", "runtime/cgroups", true},
		{"runtime", "runtime/oci", true},
		{"cmd/crib", "server", true},
		{"runtime", "cri", false},
		{"cri", "server", false},
		{"sandbox", "runtime", false},
		{"storage", "sandbox", false},
		{"runtime/cgroups", "runtime", false},
		{"internal/config", "storage", false},
		{"server", "cmd/crib", false},
		{"server", "conformance/imagegen", false},
		{"unknown", "internal/errdefs", false},
	}
	for _, c := range cases {
		if got := allowed(c.from, c.to); got != c.want {
			t.Errorf("allowed(%s → %s) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
}

// TestNoUpwardImports walks every Go file of the module (tests included:
// a test that needs an upper package belongs with that package).
func TestNoUpwardImports(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found from the test's directory: %v", err)
	}
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		from := filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		if _, ok := rankOf(from); !ok {
			t.Errorf("%s: package %s has no layer; add it to layers", path, from)
			return nil
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, module) {
				continue
			}
			checked++
			if to := strings.TrimPrefix(p, module); !allowed(from, to) {
				t.Errorf("%s imports %s: %s may not reach %s (see ARCHITECTURE / layers)", path, p, from, to)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no crib import checked: the walk found nothing")
	}
}
