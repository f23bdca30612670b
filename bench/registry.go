package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The registry side of the benchmark: the generated "big" image (pushed once,
// reproducible) and the busybox rootfs the floor runs, both spoken over the
// distribution HTTP API of the local, unauthenticated registry.

const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociConfig   = "application/vnd.oci.image.config.v1+json"
	ociLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"
)

type registry struct {
	addr   string // host:port
	client *http.Client
}

func newRegistry(addr string) *registry {
	return &registry{addr: addr, client: &http.Client{Timeout: 5 * time.Minute}}
}

func (r *registry) url(format string, args ...any) string {
	return "http://" + r.addr + fmt.Sprintf(format, args...)
}

type blob struct {
	digest string
	data   []byte
}

func newBlob(data []byte) blob {
	return blob{digest: fmt.Sprintf("sha256:%x", sha256.Sum256(data)), data: data}
}

// bigImage builds a 5-layer image of layerMiB MiB of incompressible bytes per
// layer. The bytes come from a seeded ChaCha8 stream, so every run builds
// the same digests and the push happens once per registry.
func bigImage(layers, layerMiB int) (manifest []byte, blobs []blob, err error) {
	var diffIDs []string
	var descs []map[string]any
	for i := 0; i < layers; i++ {
		tarball, gz, err := randomLayer(i, layerMiB<<20)
		if err != nil {
			return nil, nil, err
		}
		b := newBlob(gz)
		blobs = append(blobs, b)
		diffIDs = append(diffIDs, fmt.Sprintf("sha256:%x", sha256.Sum256(tarball)))
		descs = append(descs, map[string]any{"mediaType": ociLayerGz, "digest": b.digest, "size": len(gz)})
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"/bin/sh"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return nil, nil, err
	}
	cb := newBlob(cfg)
	blobs = append(blobs, cb)
	manifest, err = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociManifest,
		"config":        map[string]any{"mediaType": ociConfig, "digest": cb.digest, "size": len(cfg)},
		"layers":        descs,
	})
	return manifest, blobs, err
}

// randomLayer returns a tar holding /bench/layer-N.bin of size random bytes,
// and its gzip (fast level: random bytes do not compress anyway).
func randomLayer(n, size int) (tarball, gz []byte, err error) {
	var seed [32]byte
	copy(seed[:], fmt.Sprintf("cribbench-layer-%d", n))
	content := make([]byte, size)
	rand.NewChaCha8(seed).Read(content)

	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, h := range []*tar.Header{
		{Name: "bench/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX},
		{Name: fmt.Sprintf("bench/layer-%d.bin", n), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size), Format: tar.FormatPAX},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return nil, nil, err
		}
	}
	if _, err := tw.Write(content); err != nil {
		return nil, nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, nil, err
	}
	var gb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gb, gzip.BestSpeed)
	if _, err := zw.Write(tb.Bytes()); err != nil {
		return nil, nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, nil, err
	}
	return tb.Bytes(), gb.Bytes(), nil
}

// pushIfMissing pushes the image to repo:tag unless the registry already
// serves exactly that manifest.
func (r *registry) pushIfMissing(repo, tag string, manifest []byte, blobs []blob) error {
	want := newBlob(manifest).digest
	if got, err := r.manifestDigest(repo, tag); err != nil {
		return err
	} else if got == want {
		return nil
	}
	for _, b := range blobs {
		if err := r.pushBlob(repo, b); err != nil {
			return err
		}
	}
	req, _ := http.NewRequest(http.MethodPut, r.url("/v2/%s/manifests/%s", repo, tag), bytes.NewReader(manifest))
	req.Header.Set("Content-Type", ociManifest)
	return r.expect(req, http.StatusCreated, "PUT manifest "+repo+":"+tag)
}

func (r *registry) manifestDigest(repo, tag string) (string, error) {
	req, _ := http.NewRequest(http.MethodHead, r.url("/v2/%s/manifests/%s", repo, tag), nil)
	req.Header.Set("Accept", ociManifest)
	resp, err := r.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("registry %s: %w", r.addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", nil
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HEAD manifest %s:%s: %s", repo, tag, resp.Status)
	}
	return resp.Header.Get("Docker-Content-Digest"), nil
}

func (r *registry) pushBlob(repo string, b blob) error {
	head, _ := http.NewRequest(http.MethodHead, r.url("/v2/%s/blobs/%s", repo, b.digest), nil)
	if resp, err := r.client.Do(head); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	start, _ := http.NewRequest(http.MethodPost, r.url("/v2/%s/blobs/uploads/", repo), nil)
	resp, err := r.client.Do(start)
	if err != nil {
		return fmt.Errorf("starting upload to %s: %w", repo, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("starting upload to %s: %s", repo, resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location for %s: %w", repo, err)
	}
	loc = (&url.URL{Scheme: "http", Host: r.addr}).ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", b.digest)
	loc.RawQuery = q.Encode()
	put, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b.data))
	put.Header.Set("Content-Type", "application/octet-stream")
	return r.expect(put, http.StatusCreated, "PUT blob "+b.digest)
}

func (r *registry) expect(req *http.Request, code int, what string) error {
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != code {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", what, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// extractImage unpacks every layer of repo:tag into dir with tar, in order.
// Whiteouts do not occur in the single-layer test images this serves.
func (r *registry) extractImage(repo, tag, dir string) error {
	req, _ := http.NewRequest(http.MethodGet, r.url("/v2/%s/manifests/%s", repo, tag), nil)
	req.Header.Set("Accept", ociManifest+", application/vnd.docker.distribution.manifest.v2+json")
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("manifest %s:%s: %w", repo, tag, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("manifest %s:%s: %s", repo, tag, resp.Status)
	}
	var m struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return fmt.Errorf("manifest %s:%s: %w", repo, tag, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, l := range m.Layers {
		if err := r.extractLayer(repo, l.Digest, dir); err != nil {
			return err
		}
	}
	return nil
}

func (r *registry) extractLayer(repo, digest, dir string) error {
	resp, err := r.client.Get(r.url("/v2/%s/blobs/%s", repo, digest))
	if err != nil {
		return fmt.Errorf("layer %s: %w", digest, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("layer %s: %s", digest, resp.Status)
	}
	cmd := exec.Command("tar", "-xz", "--numeric-owner", "-C", dir)
	cmd.Stdin = resp.Body
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unpacking layer %s: %w: %s", digest, err, out)
	}
	return nil
}
