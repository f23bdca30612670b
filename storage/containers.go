package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idmap"
	cstorage "go.podman.io/storage"
	"go.podman.io/storage/pkg/idtools"
	"go.podman.io/storage/types"
)

// mountLabelKey is the container data item holding the SELinux label the
// root filesystem is mounted with.
const mountLabelKey = "crib-mount-label"

// ContainerFS is a container's root filesystem: a writable layer over its
// image.
type ContainerFS struct {
	ID         string
	Name       string
	ImageID    string
	LayerID    string
	MountLabel string
	// Metadata is the caller's own string, kept with the container.
	Metadata string
	Created  time.Time
}

// CreateContainer makes the root filesystem of container id (a new id when
// empty) from the image imageRef names (an id or a name). The name must be
// unique: a taken name or id is errdefs.ErrAlreadyExists; an unknown image
// is errdefs.ErrNotFound.
func (s *Store) CreateContainer(ctx context.Context, id, name, imageRef, mountLabel, metadata string) (ContainerFS, error) {
	if name == "" {
		return ContainerFS{}, fmt.Errorf("%w: container name is empty", errdefs.ErrInvalidArgument)
	}
	s.act.begin()
	fs, err := s.createContainer(id, name, imageRef, mountLabel, metadata, nil, nil)
	s.act.end(err != nil)
	return fs, err
}

// CreateMappedContainer is CreateContainer for a container of a pod with
// its own user namespace: its root file system shows the image's files
// owned by the pod's ids (uidMap, gidMap: container ids to crib's). The
// storage library makes, once per image and mapping, a copy of the
// image's layers chowned to those ids (overlay mounts cannot be
// idmapped, and crib's user namespace cannot idmap the host's disk), so
// the pod's root owns its image files on disk and no other pod's.
func (s *Store) CreateMappedContainer(ctx context.Context, id, name, imageRef, mountLabel, metadata string, uidMap, gidMap []idmap.Mapping) (ContainerFS, error) {
	if name == "" {
		return ContainerFS{}, fmt.Errorf("%w: container name is empty", errdefs.ErrInvalidArgument)
	}
	if len(uidMap) == 0 || len(gidMap) == 0 {
		return ContainerFS{}, fmt.Errorf("%w: a mapped container needs uid and gid mappings", errdefs.ErrInvalidArgument)
	}
	s.act.begin()
	fs, err := s.createContainer(id, name, imageRef, mountLabel, metadata, uidMap, gidMap)
	s.act.end(err != nil)
	return fs, err
}

func toIDTools(m []idmap.Mapping) []idtools.IDMap {
	out := make([]idtools.IDMap, len(m))
	for i, l := range m {
		out[i] = idtools.IDMap{ContainerID: l.ContainerID, HostID: l.HostID, Size: l.Count}
	}
	return out
}

func (s *Store) createContainer(id, name, imageRef, mountLabel, metadata string, uidMap, gidMap []idmap.Mapping) (ContainerFS, error) {
	r, err := s.lookup(imageRef)
	if err != nil {
		return ContainerFS{}, err
	}
	// Volatile: the library records the container and its layer without
	// syncing them, and mounts its overlay with "volatile" (no syncs of
	// the upper layer). A container's writable layer is never used again
	// after a power loss: every container is dead then, the kubelet makes
	// new ones, and crib deletes a layer whose record is gone or torn
	// (leftovers). The syncs (four per container) cost milliseconds of
	// every CreateContainer.
	opts := &cstorage.ContainerOptions{Volatile: true}
	if mountLabel != "" {
		// Only a label is kept: an item costs the library a second write
		// of containers.json and a file, and a missing one reads as "".
		opts.BigData = []cstorage.ContainerBigDataOption{{Key: mountLabelKey, Data: []byte(mountLabel)}}
	}
	if uidMap != nil {
		opts.IDMappingOptions = types.IDMappingOptions{UIDMap: toIDTools(uidMap), GIDMap: toIDTools(gidMap)}
	}
	c, err := s.store.CreateContainer(id, []string{name}, r.image.ID, "", metadata, opts)
	switch {
	case errors.Is(err, cstorage.ErrDuplicateName), errors.Is(err, cstorage.ErrDuplicateID):
		return ContainerFS{}, fmt.Errorf("%w: container %s (%s): %v", errdefs.ErrAlreadyExists, name, id, err)
	case errors.Is(err, cstorage.ErrImageUnknown):
		return ContainerFS{}, fmt.Errorf("image %q: %w", imageRef, errdefs.ErrNotFound)
	case err != nil:
		return ContainerFS{}, fmt.Errorf("storage: creating container %s: %w", name, err)
	}
	s.log.Debug("container filesystem created", "container", c.ID, "name", name, "image", r.image.ID)
	return s.containerFS(c), nil
}

func (s *Store) containerFS(c *cstorage.Container) ContainerFS {
	fs := ContainerFS{
		ID:       c.ID,
		ImageID:  c.ImageID,
		LayerID:  c.LayerID,
		Metadata: c.Metadata,
		Created:  c.Created,
	}
	if len(c.Names) > 0 {
		fs.Name = c.Names[0]
	}
	if label, err := s.store.ContainerBigData(c.ID, mountLabelKey); err == nil {
		fs.MountLabel = string(label)
	}
	return fs
}

// Container describes the root filesystem of container id.
func (s *Store) Container(id string) (ContainerFS, error) {
	c, err := s.store.Container(id)
	if err != nil {
		return ContainerFS{}, containerError(id, err)
	}
	return s.containerFS(c), nil
}

// ListContainers lists every container root filesystem in the store;
// all of them are crib's, since the store lives under crib's root.
func (s *Store) ListContainers() ([]ContainerFS, error) {
	containers, err := s.store.Containers()
	if err != nil {
		return nil, fmt.Errorf("storage: listing containers: %w", err)
	}
	out := make([]ContainerFS, 0, len(containers))
	for i := range containers {
		out = append(out, s.containerFS(&containers[i]))
	}
	return out, nil
}

// Mount mounts container id's root filesystem (with its mount label) and
// returns its path. Mounting a mounted one returns the same path.
func (s *Store) Mount(id string) (string, error) {
	// The library mounts layers by id too; only containers are ours to mount.
	if _, err := s.store.Container(id); err != nil {
		return "", containerError(id, err)
	}
	// A container without the item (made by an older crib) mounts
	// unlabelled; an unknown one fails in Mount below.
	label, _ := s.store.ContainerBigData(id, mountLabelKey)
	path, err := s.store.Mount(id, string(label))
	if err != nil {
		return "", containerError(id, err)
	}
	return path, nil
}

// Unmount releases container id's root filesystem entirely, however many
// times it was mounted. An unmounted or unknown container is no error, nor
// is one whose layer is gone: the library deletes the layer before the
// container's record, and a crash in between leaves the record alone.
func (s *Store) Unmount(id string) error {
	if _, err := s.store.Container(id); errors.Is(err, cstorage.ErrContainerUnknown) {
		return nil
	}
	_, err := s.store.Unmount(id, true)
	if err == nil || errors.Is(err, cstorage.ErrContainerUnknown) || errors.Is(err, cstorage.ErrLayerNotMounted) ||
		errors.Is(err, cstorage.ErrLayerUnknown) {
		return nil
	}
	return fmt.Errorf("storage: unmounting container %s: %w", id, err)
}

// DeleteContainer unmounts and deletes container id's root filesystem.
// Deleting an unknown container succeeds.
func (s *Store) DeleteContainer(id string) error {
	s.act.begin()
	defer s.act.end(false)
	if err := s.Unmount(id); err != nil {
		return err
	}
	err := s.store.DeleteContainer(id)
	if err == nil || errors.Is(err, cstorage.ErrContainerUnknown) || errors.Is(err, cstorage.ErrNotAContainer) {
		return nil
	}
	return fmt.Errorf("storage: deleting container %s: %w", id, err)
}

// ReleaseName drops container id's name, so that a new container may take
// it while this one's filesystem still awaits DeleteContainer. An unknown
// container is no error.
func (s *Store) ReleaseName(id string) error {
	c, err := s.store.Container(id)
	if errors.Is(err, cstorage.ErrContainerUnknown) {
		return nil
	}
	if err != nil {
		return containerError(id, err)
	}
	if len(c.Names) == 0 {
		return nil
	}
	if err := s.store.RemoveNames(id, c.Names); err != nil && !errors.Is(err, cstorage.ErrContainerUnknown) {
		return fmt.Errorf("storage: releasing the name of container %s: %w", id, err)
	}
	return nil
}

func containerError(id string, err error) error {
	if errors.Is(err, cstorage.ErrContainerUnknown) || errors.Is(err, cstorage.ErrNotAContainer) {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return fmt.Errorf("storage: container %s: %w", id, err)
}

// MountImage mounts the image ref names read-only, for a CRI image volume,
// and returns the path and the image id. Mounts are counted: each
// MountImage needs one UnmountImage.
func (s *Store) MountImage(ctx context.Context, ref string) (path, imageID string, err error) {
	r, err := s.lookup(ref)
	if err != nil {
		return "", "", err
	}
	path, err = s.store.MountImage(r.image.ID, []string{"ro"}, "")
	if err != nil {
		return "", "", fmt.Errorf("storage: mounting image %s: %w", ref, err)
	}
	return path, r.image.ID, nil
}

// UnmountImage releases one MountImage of image id. An image that is not
// mounted or no longer exists is no error.
func (s *Store) UnmountImage(imageID string) error {
	_, err := s.store.UnmountImage(imageID, false)
	if err == nil || errors.Is(err, cstorage.ErrImageUnknown) || errors.Is(err, cstorage.ErrLayerNotMounted) || errors.Is(err, cstorage.ErrLayerUnknown) {
		return nil
	}
	return fmt.Errorf("storage: unmounting image %s: %w", imageID, err)
}
