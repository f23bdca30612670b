package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"go.podman.io/image/v5/docker/reference"
)

// Spec is the parsed images.toml: named layers that images share, and the
// images with the references they are pushed under.
type Spec struct {
	Layers map[string]LayerSpec `toml:"layer"`
	Images []ImageSpec          `toml:"image"`
}

// LayerSpec is one shared layer: a list of entries, built into one tar.
type LayerSpec struct {
	Why     string  `toml:"why"`
	Entries []Entry `toml:"entry"`
}

// Entry kinds.
const (
	kindDir     = "dir"     // a directory
	kindFile    = "file"    // a regular file with inline content
	kindAppend  = "append"  // a file: the same path's content in a lower layer, then content
	kindHost    = "host"    // a host file copied as is (src)
	kindELF     = "elf"     // a host ELF program plus its interpreter and shared libraries
	kindBusybox = "busybox" // a host busybox (as elf) and every applet as a hard link beside it
	kindSymlink = "symlink" // a symbolic link to target
)

// Entry is one thing placed in a layer. Mode 0 means the default for the
// kind: 0755 for directories, 0644 for files, the host file's mode for
// copies. Src may name ${TESTBIN}, the stand-in program given by -testbin.
type Entry struct {
	Kind    string `toml:"kind"`
	Path    string `toml:"path"`
	Src     string `toml:"src"`
	Content string `toml:"content"`
	Target  string `toml:"target"`
	Mode    int64  `toml:"mode"`
}

// ImageSpec is one image: shared layers, an optional layer of its own made
// of Entries, and the configuration. Every reference in Refs gets the same
// manifest. Contains and NeededBy document it in IMAGES.md.
type ImageSpec struct {
	Refs     []string    `toml:"refs"`
	Layers   []string    `toml:"layers"`
	Entries  []Entry     `toml:"entry"`
	Config   ImageConfig `toml:"config"`
	Contains string      `toml:"contains"`
	NeededBy string      `toml:"needed_by"`
	Note     string      `toml:"note"`
}

// ImageConfig is the part of the OCI image configuration a spec sets.
type ImageConfig struct {
	Entrypoint   []string          `toml:"entrypoint"`
	Cmd          []string          `toml:"cmd"`
	Env          []string          `toml:"env"`
	User         string            `toml:"user"`
	WorkingDir   string            `toml:"working_dir"`
	StopSignal   string            `toml:"stop_signal"`
	ExposedPorts []string          `toml:"exposed_ports"`
	Labels       map[string]string `toml:"labels"`
}

// parseSpec decodes and checks a spec; unknown keys are errors so that a
// typo cannot silently drop part of an image.
func parseSpec(data []byte) (*Spec, error) {
	var s Spec
	dec := toml.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decode image spec: %w", err)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

func loadSpec(path string) (*Spec, error) {
	if path == "" {
		return parseSpec(embeddedSpec)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read image spec: %w", err)
	}
	return parseSpec(data)
}

func (s *Spec) check() error {
	seen := map[string]bool{}
	for name, l := range s.Layers {
		if err := checkEntries(l.Entries); err != nil {
			return fmt.Errorf("layer %q: %w", name, err)
		}
	}
	for i, img := range s.Images {
		if len(img.Refs) == 0 {
			return fmt.Errorf("image #%d: no refs", i+1)
		}
		for _, l := range img.Layers {
			if _, ok := s.Layers[l]; !ok {
				return fmt.Errorf("image %s: unknown layer %q", img.Refs[0], l)
			}
		}
		if len(img.Layers) == 0 && len(img.Entries) == 0 {
			return fmt.Errorf("image %s: no layers", img.Refs[0])
		}
		if err := checkEntries(img.Entries); err != nil {
			return fmt.Errorf("image %s: %w", img.Refs[0], err)
		}
		for _, r := range img.Refs {
			ref, err := parseRef(r)
			if err != nil {
				return err
			}
			key := ref.Repo + ":" + ref.Tag
			if seen[key] {
				return fmt.Errorf("ref %s: %s appears twice", r, key)
			}
			seen[key] = true
		}
	}
	return nil
}

func checkEntries(entries []Entry) error {
	kinds := []string{kindDir, kindFile, kindAppend, kindHost, kindELF, kindBusybox, kindSymlink}
	for _, e := range entries {
		if !slices.Contains(kinds, e.Kind) {
			return fmt.Errorf("entry %q: unknown kind %q", e.Path, e.Kind)
		}
		if !strings.HasPrefix(e.Path, "/") || strings.Contains(e.Path, "..") {
			return fmt.Errorf("entry path %q: must be absolute and clean", e.Path)
		}
		needsSrc := e.Kind == kindHost || e.Kind == kindELF || e.Kind == kindBusybox
		if needsSrc != (e.Src != "") {
			return fmt.Errorf("entry %q of kind %s: src is required exactly for host, elf and busybox", e.Path, e.Kind)
		}
		if (e.Kind == kindSymlink) != (e.Target != "") {
			return fmt.Errorf("entry %q of kind %s: target is required exactly for symlink", e.Path, e.Kind)
		}
	}
	return nil
}

// imageRef is a reference to push: its name in the local registry and tag.
type imageRef struct {
	Original string // as written in the spec
	Repo     string // <upstream host>/<upstream path>: the repository in the local registry
	Tag      string
}

// parseRef normalises a reference the way containers/image does (so
// "busybox" is docker.io/library/busybox:latest) and maps it into the local
// registry: the upstream host becomes the first path component, which keeps
// docker.io/library/busybox and public.ecr.aws/docker/library/busybox apart
// and matches `location = "127.0.0.1:5000/<host>"` in registries.conf.
func parseRef(s string) (imageRef, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return imageRef{}, fmt.Errorf("image reference %q: %w", s, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return imageRef{}, fmt.Errorf("image reference %q: a digest cannot be pushed; name a tag", s)
	}
	tag := "latest"
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	return imageRef{Original: s, Repo: reference.Domain(named) + "/" + reference.Path(named), Tag: tag}, nil
}
