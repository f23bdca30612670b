package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/docker"
	imgmanifest "go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// TestPullThroughRegistriesConf is the whole path end to end with the image
// library crib uses: build and push the real images to a private registry,
// then pull upstream names through ../registries.conf and ../policy.json
// (with the registry address swapped for the private one) and get exactly
// the manifests imagegen built.
func TestPullThroughRegistriesConf(t *testing.T) {
	needHostFiles(t)
	addr := startRegistry(t)
	images, err := buildAll(mustSpec(t), map[string]string{"TESTBIN": buildTestbin(t)})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := newRegistryClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pushAll(reg, images, false, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}

	conf, err := os.ReadFile("../registries.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	confPath := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(confPath, []byte(strings.ReplaceAll(string(conf), "127.0.0.1:5000", addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	policy, err := signature.NewPolicyFromFile("../policy.json")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Destroy()
	sys := &types.SystemContext{SystemRegistriesConfPath: confPath, SystemRegistriesConfDirPath: dir}

	want := map[string]string{}
	for _, img := range images {
		for _, r := range img.spec.Refs {
			want[r] = img.digest
		}
	}
	for i, tc := range []struct{ pull, built string }{
		{"docker://registry.k8s.io/e2e-test-images/busybox:1.29-2", "registry.k8s.io/e2e-test-images/busybox:1.29-2"},
		{"docker://docker.io/library/busybox:latest", "docker.io/library/busybox:latest"},
		{"docker://gcr.io/k8s-staging-cri-tools/test-image-tags:2", "gcr.io/k8s-staging-cri-tools/test-image-tags:2"},
		{"docker://k8s.gcr.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
		{"docker://public.ecr.aws/docker/library/busybox:1-musl", "public.ecr.aws/docker/library/busybox:1-musl"},
	} {
		src, err := docker.ParseReference(strings.TrimPrefix(tc.pull, "docker:"))
		if err != nil {
			t.Fatal(err)
		}
		dstDir := filepath.Join(dir, "img", string(rune('a'+i)))
		if err := os.MkdirAll(dstDir, 0o755); err != nil {
			t.Fatal(err)
		}
		dst, err := directory.NewReference(dstDir)
		if err != nil {
			t.Fatal(err)
		}
		man, err := copy.Image(context.Background(), pc, dst, src, &copy.Options{SourceCtx: sys})
		if err != nil {
			t.Errorf("pull %s: %v", tc.pull, err)
			continue
		}
		got, err := imgmanifest.Digest(man)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want[tc.built] {
			t.Errorf("pull %s: manifest %s, imagegen built %s", tc.pull, got, want[tc.built])
		}
	}
}
