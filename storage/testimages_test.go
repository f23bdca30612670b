package storage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// tarEntry is one entry of a hand-made layer.
type tarEntry struct {
	name string
	typ  byte // tar.TypeReg when zero
	body string
	link string
}

// testLayer is a gzip-compressed layer blob.
type testLayer struct {
	blob   []byte
	digest digest.Digest // of blob
	diffID digest.Digest // of the uncompressed tar
}

// makeLayer builds a layer from entries. It stores the tar uncompressed
// inside gzip (level 0) so that flipping a content byte of the blob keeps
// the stream readable and only the digest check can catch it.
func makeLayer(entries []tarEntry) testLayer {
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		switch e.typ {
		case 0:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.body))
		case tar.TypeDir:
			hdr.Mode = 0o755
		case tar.TypeReg:
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			panic(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				panic(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	var compressed bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&compressed, gzip.NoCompression)
	gz.Write(plain.Bytes())
	gz.Close()
	return testLayer{
		blob:   compressed.Bytes(),
		digest: digest.FromBytes(compressed.Bytes()),
		diffID: digest.FromBytes(plain.Bytes()),
	}
}

// randomLayer is a layer holding one file of n random bytes.
func randomLayer(name string, n int) testLayer {
	b := make([]byte, n)
	rand.Read(b)
	return makeLayer([]tarEntry{{name: name, body: string(b)}})
}

// testImage is one image of the test layout, named by its ref.name.
type testImage struct {
	name        string
	user        string
	layers      []testLayer
	annotations map[string]string
}

// builtImage is what writeLayout made for one testImage.
type builtImage struct {
	id       string // config digest hex: the image id a pull must give
	manifest digest.Digest
	layers   []testLayer
}

// writeLayout writes images as an OCI image layout in dir.
func writeLayout(dir string, images []testImage) (map[string]builtImage, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	putBlob := func(data []byte) (v1.Descriptor, error) {
		d := digest.FromBytes(data)
		err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), data, 0o644)
		return v1.Descriptor{Digest: d, Size: int64(len(data))}, err
	}
	built := map[string]builtImage{}
	index := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex}
	for _, img := range images {
		created := time.Unix(1700000000, 0).UTC()
		cfg := v1.Image{
			Created:  &created,
			Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
			Config:   v1.ImageConfig{User: img.user, Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/hello"}},
			RootFS:   v1.RootFS{Type: "layers"},
		}
		man := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Annotations: img.annotations}
		for _, l := range img.layers {
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
			cfg.History = append(cfg.History, v1.History{Created: &created, CreatedBy: "crib test"})
			desc, err := putBlob(l.blob)
			if err != nil {
				return nil, err
			}
			desc.MediaType = v1.MediaTypeImageLayerGzip
			man.Layers = append(man.Layers, desc)
		}
		cfgJSON, _ := json.Marshal(cfg)
		cfgDesc, err := putBlob(cfgJSON)
		if err != nil {
			return nil, err
		}
		cfgDesc.MediaType = v1.MediaTypeImageConfig
		man.Config = cfgDesc
		manJSON, _ := json.Marshal(man)
		manDesc, err := putBlob(manJSON)
		if err != nil {
			return nil, err
		}
		manDesc.MediaType = v1.MediaTypeImageManifest
		manDesc.Annotations = map[string]string{v1.AnnotationRefName: img.name}
		index.Manifests = append(index.Manifests, manDesc)
		built[img.name] = builtImage{id: cfgDesc.Digest.Encoded(), manifest: manDesc.Digest, layers: img.layers}
	}
	indexJSON, _ := json.Marshal(index)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), indexJSON, 0o644); err != nil {
		return nil, err
	}
	return built, os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// pushLayout copies each image of the layout to registry addr as
// test/NAME:latest, keeping its manifest as written.
func pushLayout(ctx context.Context, dir, addr string, names []string) error {
	policy, err := signature.NewPolicyFromBytes([]byte(defaultPolicy))
	if err != nil {
		return err
	}
	for _, name := range names {
		pc, err := signature.NewPolicyContext(policy)
		if err != nil {
			return err
		}
		src, err := layout.NewReference(dir, name)
		if err != nil {
			return err
		}
		dest, err := docker.ParseReference(fmt.Sprintf("//%s/test/%s:latest", addr, name))
		if err != nil {
			return err
		}
		_, err = copy.Image(ctx, pc, dest, src, &copy.Options{
			DestinationCtx:  &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue},
			PreserveDigests: true,
		})
		pc.Destroy()
		if err != nil {
			return fmt.Errorf("pushing %s: %w", name, err)
		}
	}
	return nil
}
