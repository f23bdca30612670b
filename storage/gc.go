package storage

import (
	"errors"
	"fmt"
	"slices"

	cstorage "go.podman.io/storage"
)

// collectGarbage removes what failed or interrupted pulls and imports
// leave: layers no image and no container uses, and driver directories no
// layer record owns. It runs only while no pull, import or container
// creation is under way (see activity), when such layers are certainly
// orphans.
func (s *Store) collectGarbage() {
	if err := s.store.GarbageCollect(); err != nil {
		s.log.Warn("storage garbage collection failed", "err", err)
	}
	removed, err := s.removeUnusedLayers()
	if err != nil {
		s.log.Warn("removing unused layers failed", "err", err)
	}
	if removed > 0 {
		s.log.Info("removed layers left by a failed pull or import", "count", removed)
	}
}

// removeUnusedLayers deletes layers that are not in the layer chain of an
// image or a container, children before parents.
func (s *Store) removeUnusedLayers() (int, error) {
	layers, err := s.store.Layers()
	if err != nil {
		return 0, fmt.Errorf("listing layers: %w", err)
	}
	if len(layers) == 0 {
		return 0, nil
	}
	images, err := s.store.Images()
	if err != nil {
		return 0, fmt.Errorf("listing images: %w", err)
	}
	containers, err := s.store.Containers()
	if err != nil {
		return 0, fmt.Errorf("listing containers: %w", err)
	}
	parent := make(map[string]string, len(layers))
	for _, l := range layers {
		parent[l.ID] = l.Parent
	}
	used := map[string]bool{}
	markChain := func(id string) {
		for id != "" && !used[id] {
			used[id] = true
			id = parent[id]
		}
	}
	for _, img := range images {
		markChain(img.TopLayer)
		for _, l := range img.MappedTopLayers {
			markChain(l)
		}
	}
	for _, c := range containers {
		markChain(c.LayerID)
	}
	unused := deepestFirst(layers, parent, used)
	removed := 0
	for _, id := range unused {
		err := s.store.DeleteLayer(id)
		if err != nil && !errors.Is(err, cstorage.ErrLayerUnknown) {
			return removed, fmt.Errorf("deleting layer %s: %w", id, err)
		}
		removed++
	}
	return removed, nil
}

// deepestFirst lists the unused layers, each after all its descendants.
func deepestFirst(layers []cstorage.Layer, parent map[string]string, used map[string]bool) []string {
	depth := func(id string) int {
		d := 0
		for p := parent[id]; p != "" && d <= len(parent); p = parent[p] {
			d++
		}
		return d
	}
	var unused []string
	for _, l := range layers {
		if !used[l.ID] {
			unused = append(unused, l.ID)
		}
	}
	slices.SortFunc(unused, func(a, b string) int { return depth(b) - depth(a) })
	return unused
}
