package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	istorage "go.podman.io/image/v5/storage"
	cstorage "go.podman.io/storage"
)

// Image describes one stored image.
type Image struct {
	// ID is the image id: the hex of its config digest, without "sha256:".
	ID string
	// RepoTags are its names with tags ("docker.io/library/busybox:1.36").
	RepoTags []string
	// RepoDigests are its repositories with manifest digests
	// ("docker.io/library/busybox@sha256:…").
	RepoDigests []string
	// Size is the bytes its layers and metadata take.
	Size uint64
	// User is the USER of its config, as written ("1000", "www-data:50").
	User string
	// Config is its OCI configuration.
	Config *v1.Image
	// Pinned says the kubelet must not garbage-collect it.
	Pinned bool
	// Created is when the image was made, when its config says.
	Created time.Time
}

// UserID splits User the way the CRI reports it: the user part as a
// number when it is one, else as a name; both empty when USER is unset.
func (i Image) UserID() (uid *int64, name string) {
	user, _, _ := strings.Cut(i.User, ":")
	if user == "" {
		return nil, ""
	}
	if n, err := strconv.ParseInt(user, 10, 64); err == nil {
		return &n, ""
	}
	return nil, user
}

// List returns the stored images; with filterRef set, only the image it
// names (none when it names nothing).
func (s *Store) List(ctx context.Context, filterRef string) ([]Image, error) {
	if filterRef != "" {
		img, err := s.Status(ctx, filterRef)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []Image{img}, nil
	}
	stored, err := s.store.Images()
	if err != nil {
		return nil, fmt.Errorf("storage: listing images: %w", err)
	}
	images := make([]Image, 0, len(stored))
	for i := range stored {
		img, err := s.describe(ctx, &stored[i])
		if errors.Is(err, cstorage.ErrImageUnknown) {
			continue // removed while we listed
		}
		if err != nil {
			return nil, err
		}
		images = append(images, img)
	}
	return images, nil
}

// Status describes the image ref names (an id, a name with a tag, or a
// name with a digest). An unknown image is errdefs.ErrNotFound.
func (s *Store) Status(ctx context.Context, ref string) (Image, error) {
	r, err := s.lookup(ref)
	if err != nil {
		return Image{}, err
	}
	img, err := s.describe(ctx, r.image)
	if errors.Is(err, cstorage.ErrImageUnknown) {
		return Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	return img, err
}

// ImageConfig returns the OCI configuration of the image ref names.
func (s *Store) ImageConfig(ctx context.Context, ref string) (*v1.Image, error) {
	r, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	return s.config(ctx, r.image.ID)
}

func (s *Store) config(ctx context.Context, id string) (*v1.Image, error) {
	ref, err := istorage.Transport.NewStoreReference(s.store, nil, id)
	if err != nil {
		return nil, fmt.Errorf("storage: image %s: %w", id, err)
	}
	img, err := ref.NewImage(ctx, s.systemContext())
	if err != nil {
		if errors.Is(err, cstorage.ErrImageUnknown) {
			return nil, fmt.Errorf("image %s: %w", id, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("storage: reading image %s: %w", id, err)
	}
	defer img.Close()
	cfg, err := img.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: reading config of image %s: %w", id, err)
	}
	return cfg, nil
}

// describe turns a stored image into an Image.
func (s *Store) describe(ctx context.Context, img *cstorage.Image) (Image, error) {
	size, err := s.store.ImageSize(img.ID)
	if err != nil {
		return Image{}, fmt.Errorf("storage: size of image %s: %w", img.ID, err)
	}
	tags, digests := repoNames(img)
	out := Image{
		ID:          img.ID,
		RepoTags:    tags,
		RepoDigests: digests,
		Size:        uint64(max(size, 0)),
		Pinned:      s.isPinned(img, tags, digests),
	}
	cfg, err := s.config(ctx, img.ID)
	if err != nil {
		// A damaged image is still listed, so that it can be seen and
		// removed.
		s.log.Warn("image config unreadable", "image", img.ID, "err", err)
		return out, nil
	}
	out.Config, out.User = cfg, cfg.Config.User
	if cfg.Created != nil {
		out.Created = *cfg.Created
	}
	return out, nil
}

// repoNames splits an image's names into tags and repository digests:
// every repository it is named in, with every manifest digest it has.
func repoNames(img *cstorage.Image) (tags, digests []string) {
	var repos []string
	for _, name := range img.Names {
		named, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			continue
		}
		if _, ok := named.(reference.Digested); !ok {
			if _, ok := named.(reference.Tagged); ok {
				tags = append(tags, named.String())
			}
		}
		if !slices.Contains(repos, named.Name()) {
			repos = append(repos, named.Name())
		}
	}
	for _, repo := range repos {
		for _, d := range img.Digests {
			digests = append(digests, repo+"@"+d.String())
		}
	}
	slices.Sort(digests)
	return tags, slices.Compact(digests)
}

func (s *Store) isPinned(img *cstorage.Image, tags, digests []string) bool {
	for _, p := range s.pinned {
		if id, ok := imageID(p); ok && id == img.ID {
			return true
		}
		n, err := Normalize(p)
		if err == nil && (slices.Contains(tags, n) || slices.Contains(digests, n)) {
			return true
		}
	}
	return false
}

// Remove removes the image ref names. Removing by a name that is one of
// several names of the image only drops that name; removing by id or by
// the last name deletes the image and the layers no other image uses.
// Removing what does not exist succeeds. An image a container uses is
// errdefs.ErrFailedPrecondition, naming the container.
func (s *Store) Remove(ctx context.Context, ref string) error {
	s.act.begin()
	defer s.act.end(false)
	r, err := s.lookup(ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if r.name != "" && slices.Contains(r.image.Names, r.name) && len(r.image.Names) > 1 {
		if err := s.store.RemoveNames(r.image.ID, []string{r.name}); err != nil {
			return fmt.Errorf("storage: untagging %s: %w", r.name, err)
		}
		s.log.Info("image untagged", "name", r.name, "image", r.image.ID)
		return nil
	}
	return s.deleteImage(r.image.ID, ref)
}

func (s *Store) deleteImage(id, ref string) error {
	if user, err := s.containerUsing(id); err != nil {
		return err
	} else if user != "" {
		return fmt.Errorf("%w: image %s is in use by container %s", errdefs.ErrFailedPrecondition, ref, user)
	}
	_, err := s.store.DeleteImage(id, true)
	switch {
	case err == nil:
		s.log.Info("image removed", "ref", ref, "image", id)
		return nil
	case errors.Is(err, cstorage.ErrImageUnknown), errors.Is(err, cstorage.ErrNotAnImage):
		// A concurrent removal won: the id came from an image lookup, so
		// "not an image" now means it is gone. Removal is idempotent.
		return nil
	case errors.Is(err, cstorage.ErrImageUsedByContainer):
		return fmt.Errorf("%w: image %s is in use by a container: %v", errdefs.ErrFailedPrecondition, ref, err)
	default:
		return fmt.Errorf("storage: removing image %s: %w", ref, err)
	}
}

// containerUsing names a container made from image id ("name (id)"), or
// returns "" when none is.
func (s *Store) containerUsing(id string) (string, error) {
	containers, err := s.store.Containers()
	if err != nil {
		return "", fmt.Errorf("storage: listing containers: %w", err)
	}
	for _, c := range containers {
		if c.ImageID == id {
			if len(c.Names) > 0 {
				return fmt.Sprintf("%s (%s)", c.Names[0], c.ID), nil
			}
			return c.ID, nil
		}
	}
	return "", nil
}
