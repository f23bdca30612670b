package storage

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// FuzzNormalize: image references from a kubelet or a person never panic
// the parser; a bad one is an invalid argument, and a normalized one
// normalizes to itself.
func FuzzNormalize(f *testing.F) {
	for _, seed := range []string{
		"busybox",
		"docker.io/library/busybox:1.36",
		"127.0.0.1:5000/e2e/busybox:1.29-2",
		"registry.k8s.io/pause@sha256:7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097",
		"busybox:latest@sha256:7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097",
		"",
		"UPPER/case",
		"busybox:",
		"a@sha256:short",
		"[::1]:5000/x:y",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		out, err := Normalize(ref)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Normalize(%q) error %v does not wrap ErrInvalidArgument", ref, err)
			}
			return
		}
		again, err := Normalize(out)
		if err != nil || again != out {
			t.Fatalf("Normalize(%q) = %q, which normalizes to %q, %v", ref, out, again, err)
		}
	})
}

// FuzzRegistriesConf layers arbitrary bytes as crib's extra registries.conf
// over the usual files, as Open does, and asks what the pull path asks of
// it: no panic, and a file the image library cannot read stops a pull with
// an error instead of being ignored.
func FuzzRegistriesConf(f *testing.F) {
	for _, seed := range []string{
		"",
		"unqualified-search-registries = [\"docker.io\"]\n",
		"[[registry]]\nprefix = \"docker.io\"\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n",
		"[[registry]]\nprefix = \"blocked.example\"\nlocation = \"blocked.example\"\nblocked = true\n",
		"[[registry]]\nlocation = \"registry.example\"\n[[registry.mirror]]\nlocation = \"mirror.example/x\"\n",
		"[aliases]\n\"busybox\" = \"docker.io/library/busybox\"\n",
		"short-name-mode = \"enforcing\"\n",
		"[[registry]]\nprefix = \"*.example.com\"\nlocation = \"\"\n",
		"[[registry]]\nprefix = \"bad prefix\"\n",
		"[registries.search]\nregistries = [\"docker.io\"]\n",
		"[[registry]\n",
		"short-name-mode = \"sometimes\"\n",
	} {
		f.Add([]byte(seed))
	}
	// Keep the machine's own registries.conf out: the fuzzed file is the
	// only one with entries.
	base := f.TempDir()
	emptyMain := filepath.Join(base, "registries.conf")
	if err := os.WriteFile(emptyMain, nil, 0o600); err != nil {
		f.Fatal(err)
	}
	f.Setenv("CONTAINERS_REGISTRIES_CONF", emptyMain)
	names := []string{"docker.io/library/busybox:latest", "blocked.example/x:1", "a.example.com/b/c:d"}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		extra := filepath.Join(dir, "crib-registries.conf")
		if err := os.WriteFile(extra, data, 0o600); err != nil {
			t.Fatal(err)
		}
		mainFile, dropIns, err := layerRegistriesConf(extra, filepath.Join(dir, "layered"))
		if err != nil {
			t.Fatalf("layering a readable file: %v", err)
		}
		sys := &types.SystemContext{SystemRegistriesConfPath: mainFile, SystemRegistriesConfDirPath: dropIns}
		sysregistriesv2.InvalidateCache()
		_, loadErr := sysregistriesv2.GetRegistries(sys)
		for _, name := range names {
			named, err := parseReference(name)
			if err != nil {
				t.Fatal(err)
			}
			err = checkNotBlocked(sys, named)
			if loadErr != nil && err == nil {
				t.Fatalf("registries.conf fails to load (%v) yet a pull of %s would go ahead", loadErr, name)
			}
			registryName(sys, named)
		}
	})
}
