package storage

import (
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/vbatts/tar-split/archive/tar"
	tarsplit "github.com/vbatts/tar-split/tar/storage"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/idtools"
	"golang.org/x/sys/unix"
)

// A staged layer is unpacked here, in process, instead of by the storage
// library's chroot untar, which re-executes the whole crib binary into a
// chroot for every layer and pipes the tar to it: for a small image that
// child costs more than the unpacking itself.
//
// The chroot is what keeps a hostile tar (a symlink to "/" and then a file
// through it, "../" names, a hard link to a file outside) from writing
// outside the layer directory. Here every path is resolved by the kernel
// with openat2(RESOLVE_IN_ROOT), as if the layer directory were "/", and
// only the last component is then acted on, through its parent's
// descriptor and never followed: the same containment without a chroot.
// The semantics (what replaces what, whiteouts, owners, modes, times,
// xattrs) are those of the library's archive.Unpack for an image layer.

// errNotInProcess says a layer goes to the library's chroot untar: an
// option this unpacker does not implement, or a kernel without openat2.
// Nothing of the stream has been read then.
var errNotInProcess = errors.New("layer not unpacked in process")

// resolveInRoot resolves a path inside the layer as if the layer
// directory were the root: "..", absolute symlinks and absolute names
// stay inside it. Magic links (/proc/self/fd/N) are refused outright.
const resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// unpackLayer unpacks an uncompressed layer tar into dest with the
// options the storage driver gives a layer (id mappings, whiteout format).
func unpackLayer(r io.Reader, dest string, opts *archive.TarOptions) error {
	u, err := newUnpacker(dest, opts)
	if err != nil {
		return err
	}
	defer u.close()
	return u.run(r, nil)
}

// newUnpacker prepares the unpacking of a layer into dest, or says with
// errNotInProcess that the library's chroot untar must do it.
func newUnpacker(dest string, opts *archive.TarOptions) (*unpacker, error) {
	if opts == nil {
		opts = &archive.TarOptions{}
	}
	// ForceMask (the driver's force_mask) turns every entry into a file,
	// directory or link and records the real kind and owner in an xattr:
	// the library does that. Other whiteout formats than these two are
	// unknown here.
	if opts.ForceMask != nil {
		return nil, fmt.Errorf("%w: force_mask is set", errNotInProcess)
	}
	if opts.WhiteoutFormat != archive.OverlayWhiteoutFormat && opts.WhiteoutFormat != archive.AUFSWhiteoutFormat {
		return nil, fmt.Errorf("%w: whiteout format %d", errNotInProcess, opts.WhiteoutFormat)
	}
	root, err := unix.Openat2(unix.AT_FDCWD, dest, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_MAGICLINKS})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		// Linux < 5.6, or a seccomp filter that refuses the call.
		return nil, fmt.Errorf("%w: openat2: %v", errNotInProcess, err)
	}
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: dest, Err: err}
	}
	return &unpacker{
		dest:   filepath.Clean(dest),
		root:   root,
		parent: -1,
		opts:   opts,
		ids:    idtools.NewIDMappingsFromMaps(opts.UIDMaps, opts.GIDMaps),
		buf:    make([]byte, 256<<10),
	}, nil
}

type unpacker struct {
	dest string
	root int // the layer directory
	// parent caches the directory of the last entry (tars list a
	// directory's files together): its path inside the layer and its
	// descriptor, -1 when none. Removing anything makes it stale (the
	// next entry resolves its directory again), as that may change what
	// the path resolves to.
	parentDir string
	parent    int
	opts      *archive.TarOptions
	ids       *idtools.IDMappings
	buf       []byte
	dirs      []dirTimes
	// seen, if set, is told every header of the tar, as read.
	seen func(*tar.Header)
}

// dirTimes are a directory's times, set once the whole tar is unpacked:
// creating its files would change them again.
type dirTimes struct {
	rel   string
	times [2]unix.Timespec
}

func (u *unpacker) close() {
	u.dropParent()
	unix.Close(u.root)
}

// run unpacks the tar r. Given a packer, it also records the tar's
// tar-split from the same reading: each header's raw bytes (and the
// padding before it) and the end of the archive as segments, each entry
// as a file of its size with the crc64 of its content, anything after the
// archive as segments; the records tar-split's own disassembler makes,
// without the second reading of the tar through a pipe it needs.
func (u *unpacker) run(r io.Reader, split tarsplit.Packer) error {
	tr := tar.NewReader(r)
	tr.RawAccounting = split != nil
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := segment(split, tr.RawBytes()); err != nil {
			return err
		}
		if u.seen != nil {
			u.seen(hdr)
		}
		var content io.Reader = tr
		var sum hash.Hash64
		if split != nil && hdr.Size > 0 {
			sum = crc64.New(tarsplit.CRCTable)
			content = io.TeeReader(tr, sum)
		}
		if err := u.entry(hdr, content); err != nil {
			return fmt.Errorf("unpacking %q: %w", hdr.Name, err)
		}
		if split != nil {
			if err := u.recordFile(split, tr, hdr, sum); err != nil {
				return err
			}
		}
	}
	if split != nil {
		if err := u.recordEnd(split, tr, r); err != nil {
			return err
		}
	}
	for _, d := range u.dirs {
		if err := u.setDirTimes(d); err != nil {
			return fmt.Errorf("unpacking %q: %w", d.rel, err)
		}
	}
	return nil
}

// recordFile records an entry in the tar-split once unpacked; the crc
// covers its whole content, also what unpacking skipped (a device in a
// user namespace, a whiteout's).
func (u *unpacker) recordFile(split tarsplit.Packer, tr *tar.Reader, hdr *tar.Header, sum hash.Hash64) error {
	e := tarsplit.Entry{Type: tarsplit.FileType, Size: hdr.Size}
	if sum != nil {
		if _, err := io.CopyBuffer(sum, tr, u.buf); err != nil {
			return err
		}
		e.Payload = sum.Sum(nil)
	}
	e.SetName(hdr.Name)
	if _, err := split.AddEntry(e); err != nil {
		return err
	}
	return segment(split, tr.RawBytes())
}

// recordEnd records the end-of-archive blocks and whatever follows them
// in the stream r (image tars often carry more zeros).
func (u *unpacker) recordEnd(split tarsplit.Packer, tr *tar.Reader, r io.Reader) error {
	if err := segment(split, tr.RawBytes()); err != nil {
		return err
	}
	for {
		n, err := r.Read(u.buf)
		if serr := segment(split, u.buf[:n]); serr != nil {
			return serr
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func segment(split tarsplit.Packer, raw []byte) error {
	if split == nil || len(raw) == 0 {
		return nil
	}
	_, err := split.AddEntry(tarsplit.Entry{Type: tarsplit.SegmentType, Payload: raw})
	return err
}

// errBreakout is a name that leaves the layer by "..": refused, as the
// library refuses it.
var errBreakout = errors.New("path leaves the layer")

// inLayer turns a tar name into a path relative to the layer directory
// ("" for the directory itself). Absolute names are inside the layer.
func inLayer(name string) (string, error) {
	if c := path.Clean(name); c == ".." || strings.HasPrefix(c, "../") {
		return "", errBreakout
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), nil
}

func splitRel(rel string) (dir, base string) {
	dir, base = path.Split(rel)
	return strings.TrimSuffix(dir, "/"), base
}

func (u *unpacker) entry(hdr *tar.Header, content io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	for _, exclude := range u.opts.ExcludePatterns {
		if strings.HasPrefix(path.Clean(hdr.Name), exclude) {
			return nil
		}
	}
	rel, err := inLayer(hdr.Name)
	if err != nil {
		return err
	}
	uid, gid, err := u.owner(hdr)
	if err != nil {
		return err
	}
	if rel == "" {
		return u.rootEntry(hdr, uid, gid)
	}
	dir, base := splitRel(rel)
	whiteout := u.opts.WhiteoutFormat == archive.OverlayWhiteoutFormat && strings.HasPrefix(base, archive.WhiteoutPrefix)
	parent, err := u.openParent(dir)
	if err != nil {
		if whiteout && errors.Is(err, unix.ENOTDIR) {
			// "rm -rf /a" may give both ".wh.a" and "a/.wh.b": the
			// first whiteout is already in a's place.
			return nil
		}
		return err
	}
	if whiteout {
		return u.whiteout(parent, dir, base, uid, gid)
	}
	// Most entries are new: they are made straight away, and what is in
	// their place looked at only when something is.
	made, err := u.create(parent, base, hdr, content)
	if errors.Is(err, unix.EEXIST) {
		if err := u.clearFor(parent, base, hdr.Typeflag == tar.TypeDir); err != nil {
			return err
		}
		made, err = u.create(parent, base, hdr, content)
	}
	if err != nil || !made {
		return err
	}
	return u.setMeta(parent, base, hdr, uid, gid)
}

// owner is the host owner of an entry: the tar's ids (or ChownOpts)
// through the layer's id mappings.
func (u *unpacker) owner(hdr *tar.Header) (int, int, error) {
	ids := idtools.IDPair{UID: hdr.Uid, GID: hdr.Gid}
	if u.opts.ChownOpts != nil {
		ids = *u.opts.ChownOpts
	}
	if !u.ids.Empty() {
		var err error
		if ids, err = u.ids.ToHost(ids); err != nil {
			return 0, 0, err
		}
	}
	return ids.UID, ids.GID, nil
}

// rootEntry applies the tar's entry for the layer directory itself,
// which may only be a directory.
func (u *unpacker) rootEntry(hdr *tar.Header, uid, gid int) error {
	if hdr.Typeflag != tar.TypeDir {
		return errors.New("a non-directory as the layer's root")
	}
	if !u.opts.NoLchown {
		if err := u.chown(func() error { return unix.Fchown(u.root, uid, gid) }); err != nil {
			return err
		}
	}
	if err := unix.Fchmod(u.root, mode(hdr)); err != nil {
		return err
	}
	if err := u.setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(u.root, k, v, 0) }); err != nil {
		return err
	}
	u.dirs = append(u.dirs, dirTimes{rel: "", times: times(hdr)})
	return nil
}

// openParent opens the directory dir of the layer ("" for the layer
// itself), creating it and its missing parents.
func (u *unpacker) openParent(dir string) (int, error) {
	if dir == "" {
		return u.root, nil
	}
	if u.parent >= 0 && u.parentDir == dir {
		return u.parent, nil
	}
	u.dropParent()
	fd, err := u.openDir(dir)
	if errors.Is(err, unix.ENOENT) {
		if err := u.mkdirAll(dir); err != nil {
			return -1, err
		}
		fd, err = u.openDir(dir)
	}
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: dir, Err: err}
	}
	u.parent, u.parentDir = fd, dir
	return fd, nil
}

// staleDir is no directory's name: the cached parent matches no entry.
const staleDir = "\x00"

func (u *unpacker) dropParent() {
	if u.parent >= 0 {
		unix.Close(u.parent)
	}
	u.parent, u.parentDir = -1, ""
}

// openDir opens a directory of the layer, resolved inside it.
func (u *unpacker) openDir(rel string) (int, error) {
	how := &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveInRoot}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(u.root, rel, how)
		// EAGAIN: a rename elsewhere on the system raced the checks
		// of a ".." in the resolution; trying again is the remedy.
		if err != unix.EAGAIN || try == 100 {
			return fd, err
		}
	}
}

// mkdirAll creates the missing directories of dir as the library does
// (mode 0777 less the umask, owned by the layer's root), through the
// symlinks already in the layer, resolved inside it.
func (u *unpacker) mkdirAll(dir string) error {
	// SecureJoin only says which names to create: each is then created
	// and entered through its parent's descriptor, never following a
	// symlink, so nothing that changes meanwhile can lead outside.
	joined, err := securejoin.SecureJoin(u.dest, dir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(u.dest, joined)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%q resolves to %q, outside the layer", dir, joined)
	}
	root := u.ids.RootPair()
	fd, err := unix.Dup(u.root)
	if err != nil {
		return err
	}
	defer func() { unix.Close(fd) }()
	for _, name := range strings.Split(rel, "/") {
		if name == "" {
			continue
		}
		if err := unix.Mkdirat(fd, name, 0o777); err == nil {
			if err := u.chown(func() error { return unix.Fchownat(fd, name, root.UID, root.GID, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
				return err
			}
		} else if err != unix.EEXIST {
			return &os.PathError{Op: "mkdirat", Path: name, Err: err}
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "openat", Path: name, Err: err}
		}
		unix.Close(fd)
		fd = next
	}
	return nil
}

// whiteout records the removal of a lower layer's file (".wh.NAME") or
// of a directory's lower contents (".wh..wh..opq") in the overlay
// format: a 0/0 character device in NAME's place, an opaque xattr.
func (u *unpacker) whiteout(parent int, dir, base string, uid, gid int) error {
	if base == archive.WhiteoutOpaqueDir {
		return unix.Fsetxattr(parent, archive.GetOverlayXattrName("opaque"), []byte{'y'}, 0)
	}
	name := strings.TrimPrefix(base, archive.WhiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("invalid whiteout %q", path.Join(dir, base))
	}
	if err := unix.Mknodat(parent, name, unix.S_IFCHR, 0); err != nil {
		if err == unix.ENOTDIR {
			return nil
		}
		return &os.PathError{Op: "mknodat", Path: path.Join(dir, name), Err: err}
	}
	return unix.Fchownat(parent, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

// clearFor removes what is at base unless both it and the entry are
// directories (then the entry's metadata applies to the existing one).
func (u *unpacker) clearFor(parent int, base string, isDir bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "fstatat", Path: base, Err: err}
	}
	existingDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if existingDir && isDir {
		return nil
	}
	if u.opts.NoOverwriteDirNonDir && existingDir != isDir {
		return fmt.Errorf("%q: not replacing a directory by a non-directory or the reverse", base)
	}
	// base may be on the cached directory's path: the next entry
	// resolves its directory again (the descriptor stays open for this
	// one, which uses it).
	u.parentDir = staleDir
	return removeAt(parent, base)
}

// removeAt removes name in the directory dirfd and, for a directory,
// everything under it, following no symlink.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "openat", Path: name, Err: err}
	}
	dir := os.NewFile(uintptr(fd), name)
	names, err := dir.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAt(fd, n); err != nil {
				break
			}
		}
	}
	dir.Close()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	return nil
}

// create makes the entry's file at base in parent; made is false for an
// entry that is skipped (a device in a user namespace). It fails with
// EEXIST, having read nothing, when something other than a directory for
// a directory is in the place.
func (u *unpacker) create(parent int, base string, hdr *tar.Header, content io.Reader) (made bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeDir:
		err := unix.Mkdirat(parent, base, mode(hdr))
		if err == unix.EEXIST {
			var st unix.Stat_t
			if unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = nil // a directory merges into the one there
			}
		}
		if err != nil {
			return false, &os.PathError{Op: "mkdirat", Path: base, Err: err}
		}
	case tar.TypeReg:
		return true, u.writeFile(parent, base, hdr, content)
	case tar.TypeSymlink:
		// Any target: it is resolved inside the layer whenever it is used.
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return false, &os.PathError{Op: "symlinkat", Path: base, Err: err}
		}
	case tar.TypeLink:
		return true, u.hardlink(parent, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return u.mknod(parent, base, hdr)
	default:
		return false, fmt.Errorf("unhandled tar entry type %q", hdr.Typeflag)
	}
	return true, nil
}

// writeFile creates a regular file and writes its content.
func (u *unpacker) writeFile(parent int, base string, hdr *tar.Header, content io.Reader) error {
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode(hdr))
	if err != nil {
		return &os.PathError{Op: "openat", Path: base, Err: err}
	}
	f := os.NewFile(uintptr(fd), base)
	// Hiding the file's ReadFrom keeps io.CopyBuffer on this buffer.
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, content, u.buf)
	return errors.Join(err, f.Close())
}

// hardlink links base to another entry of the layer. The target's
// directory is resolved inside the layer and its last component is not
// followed (linkat without AT_SYMLINK_FOLLOW): a link to a symlink is a
// link to the symlink itself.
func (u *unpacker) hardlink(parent int, base string, hdr *tar.Header) error {
	rel, err := inLayer(hdr.Linkname)
	if err != nil {
		return err
	}
	if rel == "" {
		return errors.New("a hard link to the layer's root")
	}
	dir, tbase := splitRel(rel)
	tparent := u.root
	switch {
	case dir == "":
	case dir == u.parentDir:
		tparent = u.parent // busybox's hundreds of links are all in bin
	default:
		if tparent, err = u.openDir(dir); err != nil {
			return &os.PathError{Op: "openat2", Path: dir, Err: err}
		}
		defer unix.Close(tparent)
	}
	if err := unix.Linkat(tparent, tbase, parent, base, 0); err != nil {
		return &os.PathError{Op: "linkat", Path: base, Err: err}
	}
	return nil
}

func (u *unpacker) mknod(parent int, base string, hdr *tar.Header) (bool, error) {
	kind := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		kind = unix.S_IFCHR
	case tar.TypeBlock:
		kind = unix.S_IFBLK
	}
	if kind != unix.S_IFIFO && u.opts.InUserNS {
		// Devices cannot be made in a user namespace; what was in the
		// place goes all the same, as with the library.
		return false, u.clearFor(parent, base, false)
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(parent, base, kind|mode(hdr), int(dev)); err != nil {
		return false, &os.PathError{Op: "mknodat", Path: base, Err: err}
	}
	return true, nil
}

// setMeta gives a created entry its owner, mode, times and xattrs, in
// that order: chown clears the set-id bits chmod then sets. A symlink
// has no mode of its own, nor does a hard link to one; a directory's
// times wait for the end.
func (u *unpacker) setMeta(parent int, base string, hdr *tar.Header, uid, gid int) error {
	ts := times(hdr)
	// A hard link's inode exists already, often (busybox: hundreds of
	// links to one binary) with the header's owner, mode and times: what
	// it has is not set again.
	var have *unix.Stat_t
	if hdr.Typeflag == tar.TypeLink {
		var st unix.Stat_t
		if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "fstatat", Path: base, Err: err}
		}
		have = &st
	}
	isLink := hdr.Typeflag == tar.TypeSymlink || (have != nil && have.Mode&unix.S_IFMT == unix.S_IFLNK)
	chowned := false
	if !u.opts.NoLchown && (have == nil || int(have.Uid) != uid || int(have.Gid) != gid) {
		if err := u.chown(func() error { return unix.Fchownat(parent, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
			return err
		}
		chowned = true
	}
	if !isLink && (have == nil || chowned || have.Mode&0o7777 != mode(hdr)) {
		// base is no symlink (made here, or checked just above), so
		// fchmodat's following of one is moot.
		if err := unix.Fchmodat(parent, base, mode(hdr), 0); err != nil {
			return &os.PathError{Op: "fchmodat", Path: base, Err: err}
		}
	}
	switch {
	case hdr.Typeflag == tar.TypeDir:
		rel, _ := inLayer(hdr.Name)
		u.dirs = append(u.dirs, dirTimes{rel: rel, times: ts})
	case have != nil && (isLink || (have.Atim == ts[0] && have.Mtim == ts[1])):
	default:
		if err := unix.UtimesNanoAt(parent, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "utimensat", Path: base, Err: err}
		}
	}
	// Through the parent's descriptor: an xattr call that does not
	// follow the last component needs a path.
	return u.setXattrs(hdr, func(k string, v []byte) error {
		return unix.Lsetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", parent, base), k, v, 0)
	})
}

// chown runs a chown, ignoring its failure if the driver says to.
func (u *unpacker) chown(do func() error) error {
	if err := do(); err != nil && !u.opts.IgnoreChownErrors {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

// setXattrs sets the entry's xattrs but SELinux labels. As the library
// does, a file system without xattrs, or a namespace the kernel refuses
// an xattr in (trusted.* in a user namespace), skips them.
func (u *unpacker) setXattrs(hdr *tar.Header, set func(string, []byte) error) error {
	for key, value := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, archive.PaxSchilyXattr)
		if !ok || name == "security.selinux" {
			continue
		}
		if err := set(name, []byte(value)); err != nil {
			if err == unix.ENOTSUP || (u.opts.InUserNS && err == unix.EPERM) {
				continue
			}
			return fmt.Errorf("setting xattr %s: %w", name, err)
		}
	}
	return nil
}

// setDirTimes gives a directory its times at the end, unless a later
// entry replaced it (or a directory above it) by something else.
func (u *unpacker) setDirTimes(d dirTimes) error {
	if d.rel == "" {
		return unix.UtimesNanoAt(u.root, "", d.times[:], unix.AT_EMPTY_PATH)
	}
	dir, base := splitRel(d.rel)
	parent := u.root
	if dir != "" {
		fd, err := u.openDir(dir)
		if err == unix.ENOENT || err == unix.ENOTDIR {
			return nil
		}
		if err != nil {
			return &os.PathError{Op: "openat2", Path: dir, Err: err}
		}
		defer unix.Close(fd)
		parent = fd
	}
	var st unix.Stat_t
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return unix.UtimesNanoAt(parent, base, d.times[:], unix.AT_SYMLINK_NOFOLLOW)
}

// mode is the entry's permission bits with set-id and sticky bits, in
// the kernel's encoding (which tar's is).
func mode(hdr *tar.Header) uint32 {
	return uint32(hdr.Mode) & 0o7777
}

// times are the entry's access and modification times; an access time
// before the modification is raised to it, as the library does.
func times(hdr *tar.Header) [2]unix.Timespec {
	atime := hdr.AccessTime
	if atime.Before(hdr.ModTime) {
		atime = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
}

// timespec is t for the kernel; a time the library's Chtimes would not
// set either (before 1970, after 2262) becomes the epoch, as there.
func timespec(t time.Time) unix.Timespec {
	if t.Before(time.Unix(0, 0)) || t.After(time.Unix(0, math.MaxInt64)) {
		t = time.Unix(0, 0)
	}
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}
