package storage

import (
	"errors"
	"fmt"
	"strings"

	"github.com/crib-dev/crib/internal/errdefs"
	"go.podman.io/image/v5/docker/reference"
	cstorage "go.podman.io/storage"
)

// Normalize returns ref as the kubelet spells it: registry and repository
// filled in ("busybox" → "docker.io/library/busybox:latest"), the tag or
// digest kept. With both a tag and a digest, the digest wins.
func Normalize(ref string) (string, error) {
	named, err := parseReference(ref)
	if err != nil {
		return "", err
	}
	return named.String(), nil
}

// parseReference normalizes ref to a name with exactly one of a tag or a
// digest.
func parseReference(ref string) (reference.Named, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: empty image reference", errdefs.ErrInvalidArgument)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: image reference %q: %v", errdefs.ErrInvalidArgument, ref, err)
	}
	if digested, ok := named.(reference.Digested); ok {
		if _, tagged := named.(reference.Tagged); tagged {
			named, err = reference.WithDigest(reference.TrimNamed(named), digested.Digest())
			if err != nil {
				return nil, fmt.Errorf("%w: image reference %q: %v", errdefs.ErrInvalidArgument, ref, err)
			}
		}
		return named, nil
	}
	return reference.TagNameOnly(named), nil
}

// imageID returns ref as an image id when it is spelled as one: 64 hex
// digits, optionally behind "sha256:".
func imageID(ref string) (string, bool) {
	id := strings.TrimPrefix(ref, "sha256:")
	if len(id) != 64 || !isLowerHex(id) {
		return "", false
	}
	return id, true
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// resolved is an image found by reference, with the name it was found by
// ("" when found by id or id prefix).
type resolved struct {
	image *cstorage.Image
	name  string
}

// lookup finds the image ref names: an id (full, "sha256:"-prefixed, or
// an unambiguous prefix), a tagged name or a digested name. It returns
// errdefs.ErrNotFound when there is none.
func (s *Store) lookup(ref string) (resolved, error) {
	if id, ok := imageID(ref); ok {
		return s.lookupID(ref, id)
	}
	named, err := parseReference(ref)
	if err != nil {
		if isLowerHex(ref) {
			return s.lookupID(ref, ref)
		}
		return resolved{}, err
	}
	if digested, ok := named.(reference.Digested); ok {
		return s.lookupDigest(ref, named, digested)
	}
	img, err := s.store.Image(named.String())
	if err == nil {
		return resolved{image: img, name: named.String()}, nil
	}
	if !errors.Is(err, cstorage.ErrImageUnknown) {
		return resolved{}, fmt.Errorf("storage: looking up image %s: %w", ref, err)
	}
	// A bare hex string is also an id prefix ("crictl rmi 3f5").
	if isLowerHex(ref) {
		return s.lookupID(ref, ref)
	}
	return resolved{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

func (s *Store) lookupID(ref, id string) (resolved, error) {
	img, err := s.store.Image(id)
	if errors.Is(err, cstorage.ErrImageUnknown) {
		return resolved{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	if err != nil {
		return resolved{}, fmt.Errorf("storage: looking up image %s: %w", ref, err)
	}
	if !strings.HasPrefix(img.ID, id) {
		// The store also matches names; an id-shaped ref must match an id.
		return resolved{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	return resolved{image: img}, nil
}

// lookupDigest finds the image of the repository with that manifest
// digest, whether it was pulled by digest or by a tag.
func (s *Store) lookupDigest(ref string, named reference.Named, digested reference.Digested) (resolved, error) {
	images, err := s.store.ImagesByDigest(digested.Digest())
	if err != nil && !errors.Is(err, cstorage.ErrImageUnknown) {
		return resolved{}, fmt.Errorf("storage: looking up image %s: %w", ref, err)
	}
	for _, img := range images {
		for _, name := range img.Names {
			if n, err := reference.ParseNormalizedNamed(name); err == nil && n.Name() == named.Name() {
				return resolved{image: img, name: named.String()}, nil
			}
		}
	}
	return resolved{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}
