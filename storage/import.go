package storage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/crib-dev/crib/internal/errdefs"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/oci/layout"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/archive"
)

// containerdNameAnnotation is where containerd and Docker put an image's
// full name in an OCI index.
const containerdNameAnnotation = "io.containerd.image.name"

// Import stores the images of an OCI archive or a docker-archive read
// from r (what `podman save`, `docker save` and `skopeo copy … oci-archive:`
// or `docker-archive:` write, compressed or not), each under the names the
// archive gives it. An image the archive names nothing is stored by id
// alone. source names the input in errors (a file name, or "-").
func (s *Store) Import(ctx context.Context, r io.Reader, source string) ([]Image, error) {
	s.act.begin()
	images, err := s.importArchive(ctx, r, source)
	s.act.end(err != nil)
	return images, err
}

func (s *Store) importArchive(ctx context.Context, r io.Reader, source string) ([]Image, error) {
	work, err := os.MkdirTemp(s.tmpDir, "import-")
	if err != nil {
		return nil, fmt.Errorf("storage: importing %s: %w", source, err)
	}
	defer os.RemoveAll(work)
	tarPath, err := spoolArchive(r, work)
	if err != nil {
		return nil, fmt.Errorf("storage: importing %s: %w", source, err)
	}
	format, err := archiveFormat(tarPath)
	if err != nil {
		return nil, fmt.Errorf("%w: importing %s: %v", errdefs.ErrInvalidArgument, source, err)
	}
	var images []Image
	if format == "docker-archive" {
		images, err = s.importDockerArchive(ctx, tarPath)
	} else {
		images, err = s.importOCIArchive(ctx, tarPath, filepath.Join(work, "oci"))
	}
	if err != nil {
		return nil, fmt.Errorf("storage: importing %s: %w", source, err)
	}
	return images, nil
}

// spoolArchive writes r, decompressed, to a file in dir: the archive
// readers need to seek.
func spoolArchive(r io.Reader, dir string) (string, error) {
	plain, err := archive.DecompressStream(r)
	if err != nil {
		return "", err
	}
	defer plain.Close()
	f, err := os.CreateTemp(dir, "archive-*.tar")
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, plain); err != nil {
		f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}

// archiveFormat tells a docker-archive (manifest.json) from an OCI archive
// (oci-layout and index.json). An archive with both, as `docker save`
// writes, is read as a docker-archive, whose manifest lists the tags.
func archiveFormat(tarPath string) (string, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var hasIndex bool
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("not a tar archive: %v", err)
		}
		switch path.Clean(hdr.Name) {
		case "manifest.json":
			return "docker-archive", nil
		case v1.ImageIndexFile:
			hasIndex = true
		}
	}
	if hasIndex {
		return "oci-archive", nil
	}
	return "", errors.New("neither an OCI archive (no index.json) nor a docker-archive (no manifest.json)")
}

func (s *Store) importDockerArchive(ctx context.Context, tarPath string) ([]Image, error) {
	sys := s.systemContext()
	reader, err := dockerarchive.NewReader(sys, tarPath)
	if err != nil {
		return nil, fmt.Errorf("%w: reading docker-archive: %v", errdefs.ErrInvalidArgument, err)
	}
	defer reader.Close()
	groups, err := reader.List()
	if err != nil {
		return nil, fmt.Errorf("%w: reading docker-archive: %v", errdefs.ErrInvalidArgument, err)
	}
	var images []Image
	for _, refs := range groups {
		var names []reference.Named
		for _, ref := range refs {
			if n := ref.DockerReference(); n != nil {
				names = append(names, n)
			}
		}
		img, err := s.importOne(ctx, sys, refs[0], names)
		if err != nil {
			return images, err
		}
		images = append(images, img)
	}
	return images, nil
}

func (s *Store) importOCIArchive(ctx context.Context, tarPath, dir string) ([]Image, error) {
	if err := extractPlainTar(tarPath, dir); err != nil {
		return nil, fmt.Errorf("%w: unpacking OCI archive: %v", errdefs.ErrInvalidArgument, err)
	}
	entries, err := layout.List(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: reading OCI archive: %v", errdefs.ErrInvalidArgument, err)
	}
	sys := s.systemContext()
	var images []Image
	for i, e := range entries {
		src, err := layout.NewIndexReference(dir, i)
		if err != nil {
			return images, fmt.Errorf("OCI archive image %d: %w", i, err)
		}
		img, err := s.importOne(ctx, sys, src, ociNames(e.ManifestDescriptor.Annotations))
		if err != nil {
			return images, err
		}
		images = append(images, img)
	}
	return images, nil
}

// ociNames is the name an OCI index entry gives its image. A ref.name
// annotation that is only a tag ("latest"), as the OCI spec allows, names
// no repository, hence no image.
func ociNames(annotations map[string]string) []reference.Named {
	for _, key := range []string{containerdNameAnnotation, v1.AnnotationRefName} {
		v := annotations[key]
		if !strings.ContainsAny(v, "/:@") {
			continue
		}
		if named, err := parseReference(v); err == nil {
			return []reference.Named{named}
		}
	}
	return nil
}

// importOne copies one archived image into the store under names.
func (s *Store) importOne(ctx context.Context, sys *types.SystemContext, src types.ImageReference, names []reference.Named) (Image, error) {
	var named reference.Named
	id := ""
	if len(names) > 0 {
		named = names[0]
	} else {
		var err error
		if id, err = configID(ctx, sys, src); err != nil {
			return Image{}, err
		}
	}
	dest, err := istorage.Transport.NewStoreReference(s.store, named, id)
	if err != nil {
		return Image{}, fmt.Errorf("storage: %w", err)
	}
	label := src.StringWithinTransport()
	resolvedRef, err := s.copyImage(ctx, sys, src, dest, label, nil)
	if err != nil {
		return Image{}, fmt.Errorf("copying %s: %w", label, err)
	}
	stored, err := istorage.Transport.GetStoreImage(s.store, resolvedRef)
	if err != nil {
		return Image{}, fmt.Errorf("finding imported image %s: %w", label, err)
	}
	if len(names) > 1 {
		var rest []string
		for _, n := range names[1:] {
			rest = append(rest, n.String())
		}
		if err := s.store.AddNames(stored.ID, rest); err != nil {
			return Image{}, fmt.Errorf("naming imported image %s: %w", stored.ID, err)
		}
		if stored, err = s.store.Image(stored.ID); err != nil {
			return Image{}, fmt.Errorf("finding imported image %s: %w", label, err)
		}
	}
	img, err := s.describe(ctx, stored)
	if err == nil {
		s.log.Info("image imported", "image", img.ID, "tags", img.RepoTags)
	}
	return img, err
}

// configID is the id an unnamed image gets: its config digest, as a pull
// would give it.
func configID(ctx context.Context, sys *types.SystemContext, src types.ImageReference) (string, error) {
	img, err := src.NewImage(ctx, sys)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", src.StringWithinTransport(), err)
	}
	defer img.Close()
	return img.ConfigInfo().Digest.Encoded(), nil
}

// extractPlainTar unpacks an OCI archive, which holds only directories
// and regular files, refusing anything else and any name that leaves dir:
// the archive is untrusted input.
func extractPlainTar(tarPath, dir string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("entry %q leaves the archive", hdr.Name)
		}
		target := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o700)
		case tar.TypeReg:
			err = writeFile(target, tr)
		default:
			return fmt.Errorf("entry %q is not a file or directory", hdr.Name)
		}
		if err != nil {
			return err
		}
	}
}

func writeFile(target string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
