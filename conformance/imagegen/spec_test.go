package main

import (
	"slices"
	"testing"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// critestRefs are the references critest v1.37.0 pulls by tag, read from
// sigs.k8s.io/cri-tools@v1.37.0 pkg/framework/util.go, pkg/validate/consts.go,
// consts_linux.go, security_context_linux.go, multi_container_linux.go and
// pkg/benchmark/image.go. The digest reference test-image-digest@sha256:9700…
// cannot be served offline and is left out on purpose.
var critestRefs = []string{
	"registry.k8s.io/e2e-test-images/busybox:1.29-2",
	"registry.k8s.io/e2e-test-images/nginx:1.14-2",
	"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
	"registry.k8s.io/pause:3.9",
	"k8s.gcr.io/pause:3.9",
	"gcr.io/k8s-staging-cri-tools/test-image-latest", // pulled without a tag
	"gcr.io/k8s-staging-cri-tools/test-image-tag:test",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:all",
	"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username-group",
	"gcr.io/k8s-staging-cri-tools/test-image-predefined-group",
	"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64",
	"public.ecr.aws/docker/library/busybox:1.35.0-glibc",
	"public.ecr.aws/docker/library/busybox:1-uclibc",
	"public.ecr.aws/docker/library/busybox:1",
	"public.ecr.aws/docker/library/busybox:1-glibc",
	"public.ecr.aws/docker/library/busybox:1-musl",
	"busybox", // crib's integration tests
}

func mustSpec(t *testing.T) *Spec {
	t.Helper()
	s, err := loadSpec("")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// specImage returns the image spec holding ref, normalised.
func specImage(t *testing.T, s *Spec, ref string) (ImageSpec, bool) {
	t.Helper()
	want, err := parseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range s.Images {
		for _, r := range img.Refs {
			got, err := parseRef(r)
			if err != nil {
				t.Fatal(err)
			}
			if got.Repo == want.Repo && got.Tag == want.Tag {
				return img, true
			}
		}
	}
	return ImageSpec{}, false
}

func TestSpecHasEveryCritestImage(t *testing.T) {
	s := mustSpec(t)
	for _, ref := range critestRefs {
		if _, ok := specImage(t, s, ref); !ok {
			t.Errorf("images.toml has no image for %s", ref)
		}
	}
}

// TestSpecUsers checks the USER critest reads back through ImageStatus.
func TestSpecUsers(t *testing.T) {
	s := mustSpec(t)
	for _, tc := range []struct{ ref, user string }{
		{"gcr.io/k8s-staging-cri-tools/test-image-user-uid", "1002"},
		{"gcr.io/k8s-staging-cri-tools/test-image-user-username", "www-data"},
		{"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group", "1003:1004"},
		{"gcr.io/k8s-staging-cri-tools/test-image-user-username-group", "www-data:1004"},
		{"gcr.io/k8s-staging-cri-tools/test-image-predefined-group", "1000"},
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", ""},
	} {
		img, ok := specImage(t, s, tc.ref)
		if !ok {
			t.Fatalf("no image %s", tc.ref)
		}
		if img.Config.User != tc.user {
			t.Errorf("%s: USER %q, want %q", tc.ref, img.Config.User, tc.user)
		}
	}
}

// TestSpecSameAndDistinctImages: critest expects the three test-image-tags
// tags and the two pause:3.9 registries to be one image, and test-image-1,
// -2 and -3 to be three.
func TestSpecSameAndDistinctImages(t *testing.T) {
	s := mustSpec(t)
	for _, group := range [][]string{
		{"gcr.io/k8s-staging-cri-tools/test-image-tags:1", "gcr.io/k8s-staging-cri-tools/test-image-tags:2", "gcr.io/k8s-staging-cri-tools/test-image-tags:3"},
		{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
	} {
		first, _ := specImage(t, s, group[0])
		for _, ref := range group[1:] {
			img, _ := specImage(t, s, ref)
			if img.Refs[0] != first.Refs[0] {
				t.Errorf("%s and %s must be the same image", group[0], ref)
			}
		}
	}
	seen := map[string]bool{}
	for _, ref := range []string{"gcr.io/k8s-staging-cri-tools/test-image-1:latest", "gcr.io/k8s-staging-cri-tools/test-image-2:latest", "gcr.io/k8s-staging-cri-tools/test-image-3:latest"} {
		img, _ := specImage(t, s, ref)
		if seen[img.Refs[0]] {
			t.Errorf("%s shares its image with another test-image-N", ref)
		}
		seen[img.Refs[0]] = true
	}
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, repo, tag string
		wantErr       bool
	}{
		{in: "registry.k8s.io/e2e-test-images/busybox:1.29-2", repo: "registry.k8s.io/e2e-test-images/busybox", tag: "1.29-2"},
		{in: "busybox", repo: "docker.io/library/busybox", tag: "latest"},
		{in: "docker.io/library/busybox:latest", repo: "docker.io/library/busybox", tag: "latest"},
		{in: "public.ecr.aws/docker/library/busybox:1", repo: "public.ecr.aws/docker/library/busybox", tag: "1"},
		{in: "gcr.io/k8s-staging-cri-tools/test-image-latest", repo: "gcr.io/k8s-staging-cri-tools/test-image-latest", tag: "latest"},
		{in: "gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf", wantErr: true},
		{in: "Not A Ref", wantErr: true},
	} {
		got, err := parseRef(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("parseRef(%q) = %+v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got.Repo != tc.repo || got.Tag != tc.tag {
			t.Errorf("parseRef(%q) = %+v, %v; want repo %s tag %s", tc.in, got, err, tc.repo, tc.tag)
		}
	}
}

// TestRegistriesConfResolvesToPushedLocation reads ../registries.conf with
// containers/image's own resolver: every reference must be pulled from
// exactly one place, the local repository imagegen pushes it to, over
// plain HTTP — and never from the upstream host.
func TestRegistriesConfResolvesToPushedLocation(t *testing.T) {
	sys := &types.SystemContext{SystemRegistriesConfPath: "../registries.conf", SystemRegistriesConfDirPath: t.TempDir()}
	s := mustSpec(t)
	var refs []string
	for _, img := range s.Images {
		refs = append(refs, img.Refs...)
	}
	refs = append(refs, critestRefs...)
	refs = append(refs, "gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf")
	for _, r := range refs {
		named, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			t.Fatal(err)
		}
		named = reference.TagNameOnly(named)
		reg, err := sysregistriesv2.FindRegistry(sys, named.Name())
		if err != nil || reg == nil {
			t.Fatalf("%s: no registries.conf entry (%v)", r, err)
		}
		if reg.Blocked || len(reg.Mirrors) != 0 || !reg.Insecure {
			t.Errorf("%s: entry %q blocked=%v mirrors=%d insecure=%v; want a single insecure location", r, reg.Prefix, reg.Blocked, len(reg.Mirrors), reg.Insecure)
		}
		sources, err := reg.PullSourcesFromReference(named)
		if err != nil {
			t.Fatal(err)
		}
		want := "127.0.0.1:5000/" + reference.Domain(named) + "/" + reference.Path(named)
		if len(sources) != 1 || sources[0].Reference.Name() != want {
			t.Errorf("%s: pull sources %v, want only %s", r, sources, want)
		}
	}

	search, err := sysregistriesv2.UnqualifiedSearchRegistries(sys)
	if err != nil || !slices.Equal(search, []string{"docker.io"}) {
		t.Errorf("unqualified-search-registries = %v, %v; want [docker.io]", search, err)
	}
	for _, blocked := range []string{"registry-1.docker.io/library/busybox", "us.gcr.io/x/y", "k8s.gcr.io.evil.example/x"} {
		reg, err := sysregistriesv2.FindRegistry(sys, blocked)
		if err != nil {
			t.Fatal(err)
		}
		if blocked == "k8s.gcr.io.evil.example/x" {
			if reg != nil {
				t.Errorf("%s matched entry %q", blocked, reg.Prefix)
			}
			continue
		}
		if reg == nil || !reg.Blocked {
			t.Errorf("%s: want a blocked entry, got %+v", blocked, reg)
		}
	}
}

func TestSpecRejectsMistakes(t *testing.T) {
	for name, toml := range map[string]string{
		"unknown key":   "[[image]]\nrefs=['busybox']\nlayer=['x']\n",
		"unknown layer": "[[image]]\nrefs=['busybox']\nlayers=['nope']\n",
		"no refs":       "[layer.a]\n[[image]]\nlayers=['a']\n",
		"duplicate ref": "[layer.a]\n[[image]]\nrefs=['busybox','docker.io/library/busybox:latest']\nlayers=['a']\n",
		"digest ref":    "[layer.a]\n[[image]]\nrefs=['busybox@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf']\nlayers=['a']\n",
		"relative path": "[layer.a]\n[[layer.a.entry]]\nkind='dir'\npath='tmp'\n",
		"unknown kind":  "[layer.a]\n[[layer.a.entry]]\nkind='fifo'\npath='/x'\n",
		"host no src":   "[layer.a]\n[[layer.a.entry]]\nkind='host'\npath='/x'\n",
	} {
		if _, err := parseSpec([]byte(toml)); err == nil {
			t.Errorf("%s: parseSpec accepted it", name)
		}
	}
}
