package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"go.podman.io/storage/pkg/archive"
)

// FsUsage is what one part of the store takes on its file system.
type FsUsage struct {
	// Mountpoint is a directory on that file system (the graph root),
	// for the kubelet to find its capacity.
	Mountpoint string
	Bytes      uint64
	Inodes     uint64
	Timestamp  time.Time
}

// FsInfo reports the image file system and the container file system.
// Both live under the graph root: Images counts everything there but the
// containers' writable layers, Containers counts those.
type FsInfo struct {
	Images     FsUsage
	Containers FsUsage
}

// FsInfo measures the store. It walks the graph root, so it costs time in
// proportion to the number of files stored.
func (s *Store) FsInfo(ctx context.Context) (FsInfo, error) {
	root := s.store.GraphRoot()
	now := time.Now()
	totalBytes, totalInodes, err := dirUsage(ctx, root)
	if err != nil {
		return FsInfo{}, fmt.Errorf("storage: measuring %s: %w", root, err)
	}
	containers, err := s.store.Containers()
	if err != nil {
		return FsInfo{}, fmt.Errorf("storage: listing containers: %w", err)
	}
	var cBytes, cInodes uint64
	for _, c := range containers {
		b, i, err := s.ContainerUsage(ctx, c.ID)
		if err != nil {
			continue // deleted while we measured
		}
		cBytes += b
		cInodes += i
	}
	return FsInfo{
		Images: FsUsage{
			Mountpoint: root,
			Bytes:      totalBytes - min(cBytes, totalBytes),
			Inodes:     totalInodes - min(cInodes, totalInodes),
			Timestamp:  now,
		},
		Containers: FsUsage{Mountpoint: root, Bytes: cBytes, Inodes: cInodes, Timestamp: now},
	}, nil
}

// ContainerUsage measures container id's writable layer: the bytes and
// inodes the container added or changed over its image.
func (s *Store) ContainerUsage(ctx context.Context, id string) (bytes, inodes uint64, err error) {
	c, err := s.store.Container(id)
	if err != nil {
		return 0, 0, containerError(id, err)
	}
	driver, err := s.store.GraphDriver()
	if err != nil {
		return 0, 0, fmt.Errorf("storage: %w", err)
	}
	// Overlay keeps the writable layer as a directory of its own; measure
	// that. Other drivers (vfs) copy the image, so only a diff tells.
	if meta, err := driver.Metadata(c.LayerID); err == nil && meta["UpperDir"] != "" {
		b, i, err := dirUsage(ctx, meta["UpperDir"])
		if err != nil {
			return 0, 0, fmt.Errorf("storage: measuring container %s: %w", id, err)
		}
		return b, i, nil
	}
	return s.diffUsage(id, c.LayerID)
}

func (s *Store) diffUsage(id, layerID string) (uint64, uint64, error) {
	size, err := s.store.DiffSize("", layerID)
	if err != nil {
		return 0, 0, containerError(id, err)
	}
	changes, err := s.store.Changes("", layerID)
	if err != nil {
		return 0, 0, containerError(id, err)
	}
	var inodes uint64
	for _, ch := range changes {
		if ch.Kind != archive.ChangeDelete {
			inodes++
		}
	}
	return uint64(max(size, 0)), inodes, nil
}

// dirUsage adds up the disk blocks and inodes under root, counting hard
// links once and staying on root's file system (so mounted container root
// filesystems are not counted twice).
func dirUsage(ctx context.Context, root string) (bytes, inodes uint64, err error) {
	var rootDev uint64
	seen := map[uint64]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if path == root {
			rootDev = st.Dev
		} else if st.Dev != rootDev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		inodes++
		bytes += uint64(st.Blocks) * 512
		return nil
	})
	return bytes, inodes, err
}
