package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// testbinPath is ./testbin compiled once for the whole test binary by
// TestMain, the way images.sh builds it.
var testbinPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imagegen-test-")
	if err != nil {
		panic(err)
	}
	testbinPath = filepath.Join(dir, "testbin")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", testbinPath, "./testbin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build testbin: %v\n%s", err, b)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildTestbin(t *testing.T) string {
	t.Helper()
	return testbinPath
}

// needHostFiles skips when this is not a host with the Debian packages the
// images are made of (the test machines always have them).
func needHostFiles(t *testing.T) {
	t.Helper()
	for _, f := range []string{"/usr/bin/busybox", "/usr/bin/pgrep", "/usr/bin/ipcs"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("host file %s missing: %v", f, err)
		}
	}
}

type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readLayer(t *testing.T, l *builtLayer) []tarEntry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(l.blob))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(raw) != l.diffID {
		t.Errorf("layer %s: diffID does not match the uncompressed tar", l.name)
	}
	if digestOf(l.blob) != l.digest {
		t.Errorf("layer %s: digest does not match the blob", l.name)
	}
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out = append(out, tarEntry{h, data})
	}
}

func TestBaseLayer(t *testing.T) {
	needHostFiles(t)
	spec := mustSpec(t)
	l, err := buildLayer("base", spec.Layers["base"].Entries, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	entries := readLayer(t, l)
	byName := map[string]*tar.Header{}
	var plainNames, linkNames []string
	for _, e := range entries {
		h := e.hdr
		byName[h.Name] = h
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(epoch) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d %q:%q mtime %v; want root and epoch", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		if h.Typeflag == tar.TypeLink {
			target, ok := byName[h.Linkname]
			if !ok {
				t.Errorf("hard link %s comes before its target %s", h.Name, h.Linkname)
			} else if h.Mode != target.Mode {
				// Extractors apply a link's mode to the shared inode.
				t.Errorf("hard link %s has mode %o, its target %o", h.Name, h.Mode, target.Mode)
			}
			linkNames = append(linkNames, h.Name)
		} else {
			plainNames = append(plainNames, h.Name)
		}
	}
	if !slices.IsSorted(plainNames) || !slices.IsSorted(linkNames) {
		t.Error("entries are not sorted by name")
	}
	for name, want := range map[string]byte{
		"bin/busybox": tar.TypeReg, "bin/sh": tar.TypeLink, "bin/ls": tar.TypeLink, "bin/top": tar.TypeLink,
		"bin/pgrep": tar.TypeReg, "bin/ipcs": tar.TypeReg, "lib64/ld-linux-x86-64.so.2": tar.TypeReg,
		"lib/x86_64-linux-gnu/libc.so.6": tar.TypeReg, "lib/x86_64-linux-gnu/libproc2.so.0": tar.TypeReg,
		"etc/passwd": tar.TypeReg, "tmp/": tar.TypeDir,
	} {
		h, ok := byName[name]
		if !ok {
			t.Errorf("base layer lacks %s", name)
			continue
		}
		if h.Typeflag != want {
			t.Errorf("%s: type %q, want %q", name, h.Typeflag, want)
		}
	}
	if h := byName["bin/sh"]; h != nil && h.Linkname != "bin/busybox" {
		t.Errorf("bin/sh links to %q", h.Linkname)
	}
	if h := byName["tmp/"]; h != nil && h.Mode != 0o1777 {
		t.Errorf("tmp/ mode %o", h.Mode)
	}
	if h := byName["lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"]; h != nil {
		t.Error("the loader is copied twice: it satisfies its own soname")
	}
}

func TestBuildIsReproducible(t *testing.T) {
	needHostFiles(t)
	testbin := buildTestbin(t)
	spec := mustSpec(t)
	vars := map[string]string{"TESTBIN": testbin}
	a, err := buildAll(spec, vars)
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildAll(spec, vars)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if a[i].digest != b[i].digest {
			t.Errorf("%s: two builds gave %s and %s", a[i].spec.Refs[0], a[i].digest, b[i].digest)
		}
	}
	// The base layer is one object shared by every image built on it.
	var base *builtLayer
	for _, img := range a {
		for _, l := range img.layers {
			if l.name != "base" {
				continue
			}
			if base != nil && l != base {
				t.Fatalf("%s: base layer built twice", img.spec.Refs[0])
			}
			base = l
		}
	}
}

func TestImageLayerFeatures(t *testing.T) {
	needHostFiles(t)
	testbin := buildTestbin(t)
	images, err := buildAll(mustSpec(t), map[string]string{"TESTBIN": testbin})
	if err != nil {
		t.Fatal(err)
	}
	find := func(ref string) *builtImage {
		for _, img := range images {
			if slices.Contains(img.spec.Refs, ref) {
				return img
			}
		}
		t.Fatalf("no image %s", ref)
		return nil
	}
	top := func(img *builtImage) map[string]tarEntry {
		m := map[string]tarEntry{}
		for _, e := range readLayer(t, img.layers[len(img.layers)-1]) {
			m[e.hdr.Name] = e
		}
		return m
	}

	nnp := top(find("registry.k8s.io/e2e-test-images/nonewprivs:1.3"))
	if h := nnp["usr/local/bin/nnp"].hdr; h == nil || h.Mode != 0o4755 {
		t.Errorf("nnp: want setuid 04755, got %+v", h)
	}
	group := string(top(find("gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"))["etc/group"].data)
	if !bytes.HasPrefix([]byte(group), []byte("root:x:0:\n")) || !bytes.Contains([]byte(group), []byte("\ngroup-defined-in-image:x:50000:default-user\n")) {
		t.Errorf("predefined-group /etc/group = %q; want the base groups plus 50000 with default-user", group)
	}
	hostnet := string(top(find("gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest"))["etc/nginx/conf.d/default.conf"].data)
	if !bytes.Contains([]byte(hostnet), []byte("listen 12003;")) {
		t.Errorf("hostnet-nginx default.conf = %q", hostnet)
	}
	pause := find("registry.k8s.io/pause:3.9")
	if len(pause.layers) != 1 || len(top(pause)) != 1 {
		t.Errorf("pause: want one layer holding only /pause")
	}
}

func TestELFDeps(t *testing.T) {
	needHostFiles(t)
	interp, libs, err := elfDeps("/usr/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if interp != "/lib64/ld-linux-x86-64.so.2" {
		t.Errorf("interpreter %q", interp)
	}
	if !slices.Contains(libs, "/lib/x86_64-linux-gnu/libc.so.6") {
		t.Errorf("libs %v lack libc", libs)
	}
	testbin := buildTestbin(t)
	interp, libs, err = elfDeps(testbin)
	if err != nil || interp != "" || len(libs) != 0 {
		t.Errorf("static testbin: interp %q libs %v err %v; want none", interp, libs, err)
	}
}

func TestLayerRejectsConflicts(t *testing.T) {
	for name, entries := range map[string][]Entry{
		"duplicate":            {{Kind: kindDir, Path: "/a"}, {Kind: kindFile, Path: "/a"}},
		"file as parent":       {{Kind: kindFile, Path: "/a"}, {Kind: kindFile, Path: "/a/b"}},
		"append without lower": {{Kind: kindAppend, Path: "/etc/passwd"}},
	} {
		if _, err := buildLayer(name, entries, nil, nil); err == nil {
			t.Errorf("%s: buildLayer accepted it", name)
		}
	}
}
