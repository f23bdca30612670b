package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"
)

// epoch is the modification time of every layer entry and the creation time
// of every image: layers built from the same host files are byte-identical.
var epoch = time.Unix(0, 0).UTC()

// libDirs are searched, in order, for the shared libraries an ELF program
// needs (its DT_NEEDED names); Debian keeps them in the multiarch directory.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// node is one entry of a layer tar. Paths are absolute; link is the target
// of a symlink, or the path of the file a hard link shares.
type node struct {
	path string
	typ  byte
	mode int64
	data []byte
	link string
}

// builtLayer is a layer ready to push: its gzip blob, the digests the
// manifest and the config need, and its regular files for "append" entries
// of the layers above it.
type builtLayer struct {
	name   string
	blob   []byte
	digest string // of blob
	diffID string // of the uncompressed tar
	files  map[string][]byte
}

// layerBuilder turns entries into nodes; vars expands ${NAME} in src.
type layerBuilder struct {
	nodes map[string]*node
	vars  map[string]string
	lower []*builtLayer // layers below, for "append"
}

// buildLayer builds one reproducible layer: entries sorted by path, owner
// root, fixed times, then gzip with no name or time in its header.
func buildLayer(name string, entries []Entry, vars map[string]string, lower []*builtLayer) (*builtLayer, error) {
	b := &layerBuilder{nodes: map[string]*node{}, vars: vars, lower: lower}
	// Busybox applets go last so an explicit entry (pgrep, ipcs…) wins over
	// an applet of the same name.
	var busyboxes []Entry
	for _, e := range entries {
		if e.Kind == kindBusybox {
			busyboxes = append(busyboxes, e)
			continue
		}
		if err := b.add(e); err != nil {
			return nil, fmt.Errorf("layer %s: %w", name, err)
		}
	}
	for _, e := range busyboxes {
		if err := b.addBusybox(e); err != nil {
			return nil, fmt.Errorf("layer %s: %w", name, err)
		}
	}
	tarball, err := b.tar()
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", name, err)
	}
	blob, err := gzipBytes(tarball)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", name, err)
	}
	files := map[string][]byte{}
	for p, n := range b.nodes {
		if n.typ == tar.TypeReg {
			files[p] = n.data
		}
	}
	return &builtLayer{name: name, blob: blob, digest: digestOf(blob), diffID: digestOf(tarball), files: files}, nil
}

func (b *layerBuilder) add(e Entry) error {
	switch e.Kind {
	case kindDir:
		return b.put(&node{path: e.Path, typ: tar.TypeDir, mode: orDefault(e.Mode, 0o755)})
	case kindFile:
		return b.put(&node{path: e.Path, typ: tar.TypeReg, mode: orDefault(e.Mode, 0o644), data: []byte(e.Content)})
	case kindAppend:
		base, ok := b.lowerFile(e.Path)
		if !ok {
			return fmt.Errorf("append to %s: no lower layer has that file", e.Path)
		}
		data := append(append([]byte{}, base...), e.Content...)
		return b.put(&node{path: e.Path, typ: tar.TypeReg, mode: orDefault(e.Mode, 0o644), data: data})
	case kindSymlink:
		return b.put(&node{path: e.Path, typ: tar.TypeSymlink, mode: 0o777, link: e.Target})
	case kindHost:
		return b.copyHost(b.expand(e.Src), e.Path, e.Mode)
	case kindELF:
		return b.copyELF(b.expand(e.Src), e.Path, e.Mode)
	}
	return fmt.Errorf("entry %s: unknown kind %q", e.Path, e.Kind)
}

// addBusybox copies busybox with its libraries and hard-links every applet
// it lists next to it. Hard links, not symlinks: with symlinks the shell
// would exec /bin/busybox for every applet and a masked /bin/ls would not
// look masked (critest's MaskedPaths spec).
func (b *layerBuilder) addBusybox(e Entry) error {
	src := b.expand(e.Src)
	if err := b.copyELF(src, e.Path, e.Mode); err != nil {
		return err
	}
	out, err := exec.Command(src, "--list").Output()
	if err != nil {
		return fmt.Errorf("list applets of %s: %w", src, err)
	}
	dir := path.Dir(e.Path)
	for _, applet := range strings.Fields(string(out)) {
		p := path.Join(dir, applet)
		if _, taken := b.nodes[p]; taken || p == e.Path {
			continue
		}
		// A hard link's header carries its target's mode, as GNU tar and
		// Docker write it: extractors (go.podman.io/storage among them)
		// apply it to the shared inode, so mode 0 would make busybox
		// unexecutable.
		if err := b.put(&node{path: p, typ: tar.TypeLink, link: e.Path, mode: b.nodes[e.Path].mode}); err != nil {
			return err
		}
	}
	return nil
}

// copyELF copies a program plus its ELF interpreter and, transitively, its
// shared libraries, each at the path the loader will look for it.
func (b *layerBuilder) copyELF(src, dst string, mode int64) error {
	if err := b.copyHost(src, dst, mode); err != nil {
		return err
	}
	interp, libs, err := elfDeps(src)
	if err != nil {
		return err
	}
	if interp != "" {
		if err := b.copyShared(interp); err != nil {
			return err
		}
	}
	for _, lib := range libs {
		if err := b.copyShared(lib); err != nil {
			return err
		}
	}
	return nil
}

// copyShared copies a library unless an earlier program already brought it.
func (b *layerBuilder) copyShared(p string) error {
	if _, ok := b.nodes[p]; ok {
		return nil
	}
	return b.copyHost(p, p, 0)
}

// copyHost copies a host file, following symlinks; mode 0 keeps the host's
// permission bits.
func (b *layerBuilder) copyHost(src, dst string, mode int64) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy host file: %w", err)
	}
	if mode == 0 {
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("copy host file: %w", err)
		}
		mode = int64(fi.Mode().Perm())
	}
	return b.put(&node{path: dst, typ: tar.TypeReg, mode: mode, data: data})
}

// put adds a node and any missing parent directories; a path may appear
// once per layer.
func (b *layerBuilder) put(n *node) error {
	if _, dup := b.nodes[n.path]; dup {
		return fmt.Errorf("path %s appears twice in one layer", n.path)
	}
	if n.path == "/" {
		return fmt.Errorf("the root directory cannot be an entry")
	}
	b.nodes[n.path] = n
	for dir := path.Dir(n.path); dir != "/"; dir = path.Dir(dir) {
		if parent, ok := b.nodes[dir]; ok {
			if parent.typ != tar.TypeDir {
				return fmt.Errorf("%s needs directory %s, which is not a directory", n.path, dir)
			}
			continue
		}
		b.nodes[dir] = &node{path: dir, typ: tar.TypeDir, mode: 0o755}
	}
	return nil
}

func (b *layerBuilder) lowerFile(p string) ([]byte, bool) {
	for i := len(b.lower) - 1; i >= 0; i-- {
		if data, ok := b.lower[i].files[p]; ok {
			return data, true
		}
	}
	return nil, false
}

func (b *layerBuilder) expand(s string) string {
	return os.Expand(s, func(k string) string { return b.vars[k] })
}

// tar writes the nodes in path order; hard links come after everything
// else, since an extractor must have seen the file a link points to.
func (b *layerBuilder) tar() ([]byte, error) {
	var plain, links []*node
	for _, n := range b.nodes {
		if n.typ == tar.TypeLink {
			links = append(links, n)
		} else {
			plain = append(plain, n)
		}
	}
	byPath := func(ns []*node) {
		sort.Slice(ns, func(i, j int) bool { return ns[i].path < ns[j].path })
	}
	byPath(plain)
	byPath(links)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range append(plain, links...) {
		if err := writeNode(tw, n); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

func writeNode(tw *tar.Writer, n *node) error {
	name := strings.TrimPrefix(n.path, "/")
	hdr := &tar.Header{Name: name, Typeflag: n.typ, Mode: n.mode & 0o7777, ModTime: epoch, Format: tar.FormatPAX}
	switch n.typ {
	case tar.TypeDir:
		hdr.Name += "/"
	case tar.TypeReg:
		hdr.Size = int64(len(n.data))
	case tar.TypeSymlink:
		hdr.Linkname = n.link
	case tar.TypeLink:
		hdr.Linkname = strings.TrimPrefix(n.link, "/")
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar header %s: %w", name, err)
	}
	if n.typ == tar.TypeReg {
		if _, err := tw.Write(n.data); err != nil {
			return fmt.Errorf("tar data %s: %w", name, err)
		}
	}
	return nil
}

// elfDeps returns the interpreter (PT_INTERP) of an ELF program and the host
// paths of the shared libraries it needs, transitively, in a stable order.
// A static program has neither.
func elfDeps(prog string) (string, []string, error) {
	f, err := elf.Open(prog)
	if err != nil {
		return "", nil, fmt.Errorf("read ELF %s: %w", prog, err)
	}
	defer f.Close()
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data := make([]byte, p.Filesz)
			if _, err := p.ReadAt(data, 0); err != nil {
				return "", nil, fmt.Errorf("read interpreter of %s: %w", prog, err)
			}
			interp = strings.TrimRight(string(data), "\x00")
		}
	}
	var libs []string
	seen := map[string]bool{path.Base(interp): true} // the loader satisfies its own soname
	queue := []string{prog}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		needed, err := neededLibs(cur)
		if err != nil {
			return "", nil, err
		}
		for _, soname := range needed {
			if seen[soname] {
				continue
			}
			seen[soname] = true
			p, err := findLib(soname)
			if err != nil {
				return "", nil, fmt.Errorf("%s needs %s: %w", cur, soname, err)
			}
			libs = append(libs, p)
			queue = append(queue, p)
		}
	}
	sort.Strings(libs)
	return interp, libs, nil
}

func neededLibs(p string) ([]string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read ELF %s: %w", p, err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("read DT_NEEDED of %s: %w", p, err)
	}
	return libs, nil
}

func findLib(soname string) (string, error) {
	for _, dir := range libDirs {
		p := path.Join(dir, soname)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %v: %w", libDirs, fs.ErrNotExist)
}

// gzipBytes compresses with a header that carries no name and no time.
func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if _, err := zw.Write(data); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return buf.Bytes(), nil
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func orDefault(mode, def int64) int64 {
	if mode == 0 {
		return def
	}
	return mode
}
