package storage

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vbatts/tar-split/tar/asm"
	tarsplit "github.com/vbatts/tar-split/tar/storage"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/idtools"
	"go.podman.io/storage/pkg/tarlog"
	"golang.org/x/sys/unix"
)

// entry is one tar entry of an unpacker test; body is a regular file's
// content.
type entry struct {
	hdr  tar.Header
	body string
}

var unpackTime = time.Unix(1600000000, 123456789)

func reg(name, body string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body: body}
}
func dir(name string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}
func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}
func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// with returns e changed by f (owners, modes, times, xattrs).
func (e entry) with(f func(*tar.Header)) entry {
	f(&e.hdr)
	return e
}

func layerTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag != tar.TypeXGlobalHeader { // which may only have records
			if h.ModTime.IsZero() {
				h.ModTime = unpackTime
			}
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hostileFixture is a layer directory and, beside it, a canary directory
// holding one file: an unpacker must change nothing in the canary.
type hostileFixture struct {
	dest, canary string
}

func newHostileFixture(t *testing.T) hostileFixture {
	top := t.TempDir()
	f := hostileFixture{dest: filepath.Join(top, "layer"), canary: filepath.Join(top, "canary")}
	for _, d := range []string{f.dest, f.canary} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.canary, "target"), []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// escaped says what an unpack changed in the canary, "" for nothing.
func (f hostileFixture) escaped(t *testing.T) string {
	t.Helper()
	var changes []string
	entries, err := os.ReadDir(f.canary)
	if err != nil {
		return fmt.Sprintf("canary directory: %v", err)
	}
	for _, e := range entries {
		if e.Name() != "target" {
			changes = append(changes, "new "+e.Name())
		}
	}
	target := filepath.Join(f.canary, "target")
	var st unix.Stat_t
	if err := unix.Lstat(target, &st); err != nil {
		return fmt.Sprintf("canary target: %v", err)
	}
	if data, _ := os.ReadFile(target); string(data) != "original" || st.Mode&unix.S_IFMT != unix.S_IFREG {
		changes = append(changes, fmt.Sprintf("target is %q (mode %o)", data, st.Mode))
	}
	if st.Nlink != 1 || st.Mode&0o7777 != 0o644 || st.Uid != 0 {
		changes = append(changes, fmt.Sprintf("target has %d links, mode %o, owner %d", st.Nlink, st.Mode&0o7777, st.Uid))
	}
	for _, d := range []string{f.canary, target} {
		if n, _ := unix.Llistxattr(d, make([]byte, 1024)); n > 0 {
			changes = append(changes, d+" got xattrs")
		}
	}
	return strings.Join(changes, "; ")
}

type hostileTar struct {
	name    string
	entries []entry
	inside  string // what the entries must have made inside the layer instead, if anything
}

// hostileTars aim at the canary from inside a layer: by "..", absolute
// names, symlinks (absolute, relative, chained) followed by entries
// through them, hard links, whiteouts and opaque markers through a
// symlink, and replacing a directory by a symlink under later entries.
func hostileTars(canary string) []hostileTar {
	up := strings.Repeat("../", 12)
	outside := up + strings.TrimPrefix(canary, "/")
	owned := func(e entry) entry { return e.with(func(h *tar.Header) { h.Uid, h.Mode = 4242, 0o4777 }) }
	return []hostileTar{
		{name: "dotdot name", entries: []entry{reg(outside+"/pwned", "x")}},
		{name: "absolute name", entries: []entry{reg(canary+"/pwned", "x")}, inside: canary + "/pwned"},
		{name: "absolute symlink then a file through it", entries: []entry{symlink("link", canary), reg("link/pwned", "x")}, inside: canary + "/pwned"},
		{name: "absolute symlink then the file it names", entries: []entry{symlink("link", canary+"/target"), owned(reg("link", "pwned"))}, inside: "link"},
		{name: "relative escaping symlink then a file through it", entries: []entry{dir("a/"), symlink("a/up", up), reg("a/up"+canary+"/pwned", "x")}, inside: canary + "/pwned"},
		{name: "symlink to / then a file through it", entries: []entry{symlink("root", "/"), reg("root"+canary+"/target", "pwned")}, inside: canary + "/target"},
		{name: "symlink chain then a file through it", entries: []entry{symlink("a", "b"), symlink("b", "c"), symlink("c", canary), reg("a/pwned", "x")}, inside: canary + "/pwned"},
		{name: "symlink loop", entries: []entry{symlink("a", "b"), symlink("b", "a"), reg("a/pwned", "x")}},
		{name: "directory replaced by a symlink under later entries", entries: []entry{dir("d/"), reg("d/x", "x"), symlink("d", canary), reg("d/pwned", "x")}, inside: canary + "/pwned"},
		{name: "hard link by dotdot", entries: []entry{hardlink("hl", outside+"/target")}},
		{name: "hard link by an absolute name", entries: []entry{hardlink("hl", canary+"/target")}},
		{name: "hard link through a symlink", entries: []entry{symlink("link", canary), hardlink("hl", "link/target")}},
		{name: "hard link to an escaping symlink then written", entries: []entry{symlink("s", canary+"/target"), hardlink("hl", "s"), owned(reg("s", "pwned"))}, inside: "s"},
		{name: "chmod and chown of a hard link to an escaping symlink", entries: []entry{symlink("s", canary+"/target"), owned(hardlink("hl", "s"))}},
		{name: "whiteout through a symlink", entries: []entry{symlink("link", canary), reg("link/.wh.target", "")}, inside: canary + "/target"},
		{name: "opaque directory through a symlink", entries: []entry{symlink("link", canary), reg("link/.wh..wh..opq", "")}, inside: canary},
		{name: "xattr on a symlink's target", entries: []entry{symlink("link", canary+"/target"), symlink("link", canary+"/target").with(func(h *tar.Header) {
			h.PAXRecords = map[string]string{"SCHILY.xattr.trusted.crib": "pwned"}
		})}, inside: "link"},
		{name: "directory entry over a symlink", entries: []entry{symlink("link", canary), dir("link/").with(func(h *tar.Header) { h.Mode, h.Uid = 0o777, 4242 }), reg("link/pwned", "x")}, inside: "link/pwned"},
	}
}

// TestUnpackContainsHostileTars unpacks each hostile tar: it may fail or
// succeed, but nothing outside the layer changes, and what an entry aimed
// outside lands inside the layer. The same tars through naiveUnpack show
// that the canary check sees an escape.
func TestUnpackContainsHostileTars(t *testing.T) {
	escapes := 0
	for i := range hostileTars("/canary") {
		f := newHostileFixture(t)
		tc := hostileTars(f.canary)[i]
		t.Run(tc.name, func(t *testing.T) {
			err := unpackLayer(bytes.NewReader(layerTar(t, tc.entries...)), f.dest, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat})
			t.Logf("unpackLayer: %v", err)
			if errors.Is(err, errNotInProcess) {
				t.Fatal(err)
			}
			if change := f.escaped(t); change != "" {
				t.Errorf("the layer changed the canary: %s", change)
			}
			if tc.inside != "" {
				if err != nil {
					t.Errorf("unpacking failed, want %s made inside the layer: %v", tc.inside, err)
				} else if _, err := os.Lstat(filepath.Join(f.dest, tc.inside)); err != nil {
					t.Errorf("nothing made inside the layer: %v", err)
				}
			}
		})
		naive := newHostileFixture(t)
		naiveUnpack(bytes.NewReader(layerTar(t, hostileTars(naive.canary)[i].entries...)), naive.dest)
		if change := naive.escaped(t); change != "" {
			t.Logf("%s: out through the naive unpacker: %s", tc.name, change)
			escapes++
		}
	}
	if escapes == 0 {
		t.Error("no hostile tar got out through the naive unpacker: the canary check sees nothing")
	}
}

// naiveUnpack writes entries at dest joined with their names, following
// whatever symlinks the tar made: what the chroot or openat2 prevent.
func naiveUnpack(r io.Reader, dest string) {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return
		}
		p := filepath.Join(dest, hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			os.WriteFile(p, nil, 0o644)
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
			if err == nil {
				io.Copy(f, tr)
				f.Close()
			}
			os.Chmod(p, os.FileMode(hdr.Mode&0o777))
		case tar.TypeSymlink:
			os.Symlink(hdr.Linkname, p)
		case tar.TypeLink:
			os.Link(filepath.Join(dest, hdr.Linkname), p)
		}
	}
}

// TestUnpackMatchesTheLibrary unpacks layers with both the library's
// archive.Unpack (in process: the tars are benign) and unpackLayer, and
// compares the trees: kinds, contents, link targets, owners (through id
// mappings), modes with set-id and sticky bits, times (directories' kept
// after their files were made), xattrs, hard links, whiteouts and opaque
// markers in both formats, and a file replacing a directory and back.
func TestUnpackMatchesTheLibrary(t *testing.T) {
	at := func(sec int64) func(*tar.Header) {
		return func(h *tar.Header) { h.ModTime, h.AccessTime = time.Unix(sec, 5), time.Unix(sec+100, 0) }
	}
	owner := func(uid, gid int, mode int64) func(*tar.Header) {
		return func(h *tar.Header) { h.Uid, h.Gid, h.Mode = uid, gid, mode }
	}
	xattrs := func(h *tar.Header) {
		h.PAXRecords = map[string]string{"SCHILY.xattr.user.crib": "u", "SCHILY.xattr.trusted.crib": "t", "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0"}
	}
	layer := []entry{
		dir("./").with(owner(0, 0, 0o751)).with(at(1000)),
		dir("bin/").with(at(2000)),
		reg("bin/su", "setuid").with(owner(0, 0, 0o4755)).with(at(3000)),
		reg("bin/tool", "tool").with(owner(1000, 2000, 0o2750)).with(xattrs),
		hardlink("bin/tool-link", "bin/tool").with(owner(1000, 2000, 0o2750)), // the link's header sets the shared inode's owner and mode again
		symlink("bin/sh", "busybox").with(owner(5, 6, 0o777)).with(at(4000)),
		symlink("abs", "/etc/passwd"),
		dir("tmp/").with(owner(0, 0, 0o1777)).with(at(5000)),
		dir("private/").with(owner(33, 33, 0o700)).with(at(6000)).with(xattrs),
		reg("private/secret", "s").with(owner(33, 33, 0o600)),
		reg("deep/er/file", "parents made on the way"),
		dir("was-dir/"), reg("was-dir/child", "c"), reg("was-dir", "now a file"),
		reg("was-file", "f"), dir("was-file/").with(at(7000)),
		symlink("was-link", "bin"), dir("was-link/").with(at(8000)),
		reg("gone/.wh.removed", ""),
		dir("opaque/").with(at(9000)), reg("opaque/.wh..wh..opq", ""), reg("opaque/kept", "k"),
		reg("hl-target", "x"), hardlink("hl-changed", "hl-target").with(owner(7, 8, 0o4711)).with(at(3500)),
		reg("dup", "one"), reg("dup", "two").with(owner(9, 9, 0o600)),
		symlink("duplink", "one"), symlink("duplink", "two"),
		entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o640}},
		reg("null", "replaced by a device, or just removed in a user namespace"),
		entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		reg("empty", ""),
		reg("big", strings.Repeat("0123456789abcdef", 70000)),
	}
	mappings := []idtools.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	for _, tc := range []struct {
		name string
		opts archive.TarOptions
	}{
		{"overlay whiteouts", archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat}},
		{"aufs whiteouts, id mappings", archive.TarOptions{WhiteoutFormat: archive.AUFSWhiteoutFormat, UIDMaps: mappings, GIDMaps: mappings}},
		{"in a user namespace", archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat, InUserNS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := layerTar(t, layer...)
			lib, ours := filepath.Join(t.TempDir(), "lib"), filepath.Join(t.TempDir(), "ours")
			for _, d := range []string{lib, ours} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			libOpts, ourOpts := tc.opts, tc.opts
			if err := archive.Unpack(bytes.NewReader(data), lib, &libOpts); err != nil {
				t.Fatalf("library: %v", err)
			}
			if err := unpackLayer(bytes.NewReader(data), ours, &ourOpts); err != nil {
				t.Fatalf("unpackLayer: %v", err)
			}
			want, got := describeTree(t, lib), describeTree(t, ours)
			for _, p := range slices.Sorted(func(yield func(string) bool) {
				seen := map[string]bool{}
				for _, m := range []map[string]string{want, got} {
					for k := range m {
						if !seen[k] && !yield(k) {
							return
						}
						seen[k] = true
					}
				}
			}) {
				if want[p] != got[p] {
					t.Errorf("%s:\n library: %s\n ours:    %s", p, want[p], got[p])
				}
			}
			if t.Failed() {
				return
			}
			// Spot checks that the comparison compares what matters.
			for p, sub := range map[string]string{
				"bin/su": "mode 104755", "bin/tool": "mode 102750 owner 1000:2000", "tmp": "mode 41777",
				"private": "trusted.crib=t", "opaque": "overlay.opaque=y", "gone/removed": "mode 20000 owner",
				"was-dir": "content now a file", "bin/tool-link": "nlink 2",
				"hl-target": "nlink 2 mtime 3500.000000005", "hl-changed": "mode 104711", "dup": "mode 100600", "duplink": "-> two",
			} {
				if tc.opts.WhiteoutFormat == archive.AUFSWhiteoutFormat && (p == "opaque" || p == "gone/removed") {
					continue
				}
				if len(tc.opts.UIDMaps) > 0 && p == "bin/tool" {
					sub = "mode 102750 owner 101000:102000"
				}
				if !strings.Contains(got[p], sub) {
					t.Errorf("%s = %s, want %q in it", p, got[p], sub)
				}
			}
		})
	}
}

// describeTree describes every file under root, by path.
func describeTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		mtime := fmt.Sprintf("%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		if st.Mtim.Sec > unpackTime.Unix()+1e6 {
			mtime = "now" // made on the way, not by an entry of its own: the two runs differ
		}
		d := fmt.Sprintf("mode %o owner %d:%d nlink %d mtime %s", st.Mode, st.Uid, st.Gid, st.Nlink, mtime)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(data) > 64 {
				data = []byte(fmt.Sprintf("%d bytes, %x", len(data), data[len(data)-8:]))
			}
			d += fmt.Sprintf(" content %s", data)
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			d += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			d += fmt.Sprintf(" rdev %d", st.Rdev)
		}
		names := make([]byte, 4096)
		n, _ := unix.Llistxattr(p, names)
		var attrs []string
		for _, name := range strings.Split(string(names[:max(n, 0)]), "\x00") {
			if name == "" {
				continue
			}
			v := make([]byte, 256)
			m, _ := unix.Lgetxattr(p, name, v)
			attrs = append(attrs, name+"="+string(v[:max(m, 0)]))
		}
		slices.Sort(attrs)
		out[rel] = d + " xattrs " + strings.Join(attrs, ",")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnpackLeavesUnknownOptionsToTheLibrary: a force_mask layer goes to
// the library's unpacker before anything is read.
func TestUnpackLeavesUnknownOptionsToTheLibrary(t *testing.T) {
	mask := os.FileMode(0o700)
	r := bytes.NewReader(layerTar(t, reg("f", "x")))
	err := unpackLayer(r, t.TempDir(), &archive.TarOptions{ForceMask: &mask})
	if !errors.Is(err, errNotInProcess) || r.Len() != int(r.Size()) {
		t.Errorf("unpackLayer with a force mask = %v, %d bytes read; want errNotInProcess, none", err, int(r.Size())-r.Len())
	}
}

// TestUnpackedLayerMountsAsOverlay mounts a lower layer and an upper
// layer unpacked here: the upper's whiteout hides a lower file, its
// opaque directory hides the lower directory's contents.
func TestUnpackedLayerMountsAsOverlay(t *testing.T) {
	top := t.TempDir()
	lower, upper, work, merged := filepath.Join(top, "lower"), filepath.Join(top, "upper"), filepath.Join(top, "work"), filepath.Join(top, "merged")
	for _, d := range []string{lower, upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat}
	if err := unpackLayer(bytes.NewReader(layerTar(t, dir("etc/"), reg("etc/old", "o"), reg("etc/kept", "k"), dir("var/"), reg("var/a", "a"), reg("var/b", "b"))), lower, opts); err != nil {
		t.Fatal(err)
	}
	if err := unpackLayer(bytes.NewReader(layerTar(t, dir("etc/"), reg("etc/.wh.old", ""), dir("var/"), reg("var/.wh..wh..opq", ""), reg("var/new", "n"))), upper, opts); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)); err != nil {
		t.Skipf("cannot mount an overlay here: %v", err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	for dir, want := range map[string][]string{"etc": {"kept"}, "var": {"new"}} {
		entries, err := os.ReadDir(filepath.Join(merged, dir))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, want) {
			t.Errorf("merged %s holds %v, want %v", dir, names, want)
		}
	}
}

// TestUnpackerRecordsOwnersAsTheTarLog: the owners and root mode a staged
// layer records come from the unpacker's own reading of the headers when
// it unpacks in process, from the library's tar log otherwise; both see
// the same (whiteouts aside, the root directory's mode).
func TestUnpackerRecordsOwnersAsTheTarLog(t *testing.T) {
	data := layerTar(t,
		entry{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "x"}}},
		dir("./").with(func(h *tar.Header) { h.Mode, h.Uid, h.Gid = 0o751, 3, 4 }),
		dir("a/").with(func(h *tar.Header) { h.Uid, h.Gid = 1000, 1001 }),
		reg("a/f", "x").with(func(h *tar.Header) { h.Uid, h.Gid = 5, 6 }),
		reg("a/.wh.gone", "").with(func(h *tar.Header) { h.Uid, h.Gid = 77, 78 }),
		symlink("l", "a").with(func(h *tar.Header) { h.Uid, h.Gid = 9, 10 }),
	)
	fromLog := newOwnerLog()
	logger, err := tarlog.NewLogger(fromLog.record)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := logger.Write(data); err != nil || logger.Close() != nil {
		t.Fatal(err)
	}
	fromUnpacker := newOwnerLog()
	u, err := newUnpacker(t.TempDir(), &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat})
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	u.seen = fromUnpacker.record
	if err := u.run(bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	describe := func(o *ownerLog) string {
		root := "no root mode"
		if o.rootMode != nil {
			root = o.rootMode.String()
		}
		return fmt.Sprint(o.sorted(o.uids), o.sorted(o.gids), " ", root)
	}
	want, got := describe(fromLog), describe(fromUnpacker)
	if got != want || want != "[0 3 5 9 1000] [0 4 6 10 1001] drwxr-x--x" {
		t.Errorf("owners and root mode: unpacker %s, tar log %s", got, want)
	}
}

// TestUnpackerRecordsTheTarSplitOfTheLibrary: the tar-split the unpacker
// records while unpacking is the one tar-split's own disassembler records
// from the same tar (what the store keeps to give the exact tar back):
// headers with PAX records and long names, contents, links, entries the
// unpacker skips (a device in a user namespace, a whiteout with content),
// the end of the archive and zeros after it.
func TestUnpackerRecordsTheTarSplitOfTheLibrary(t *testing.T) {
	long := strings.Repeat("long-name/", 12) + "file"
	data := layerTar(t,
		dir("./"), dir("bin/"), reg("bin/tool", strings.Repeat("x", 70000)), hardlink("bin/link", "bin/tool"),
		symlink("bin/sh", "tool"), dir(strings.Repeat("long-name/", 12)), reg(long, "long"),
		reg("with-xattr", "x").with(func(h *tar.Header) { h.PAXRecords = map[string]string{"SCHILY.xattr.user.a": "b"} }),
		reg(".wh.gone", "content of a whiteout"),
		entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		reg("empty", ""),
	)
	data = append(data, make([]byte, 5000)...) // more zeros after the archive's end
	var want bytes.Buffer
	payload, done, err := asm.NewInputTarStreamWithDone(bytes.NewReader(data), tarsplit.NewJSONPacker(&want), tarsplit.NewDiscardFilePutter())
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, payload)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	u, err := newUnpacker(t.TempDir(), &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat, InUserNS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	if err := u.run(bytes.NewReader(data), tarsplit.NewJSONPacker(&got)); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("tar-split:\n got  %s\n want %s", got.String(), want.String())
	}
}

// TestUnpackLeavesKernelsWithoutOpenat2ToTheLibrary: where openat2 fails
// with ENOSYS (Linux < 5.6; here a seccomp filter on one thread says so),
// the layer goes to the library's chroot untar, before anything is read.
func TestUnpackLeavesKernelsWithoutOpenat2ToTheLibrary(t *testing.T) {
	dest := t.TempDir()
	r := bytes.NewReader(layerTar(t, reg("f", "x")))
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, filter and
		// all; the runtime starts no thread from a locked one.
		runtime.LockOSThread()
		if err := refuseOpenat2(); err != nil {
			done <- fmt.Errorf("installing the seccomp filter: %w", err)
			return
		}
		done <- unpackLayer(r, dest, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat})
	}()
	err := <-done
	if !errors.Is(err, errNotInProcess) || !strings.Contains(err.Error(), "function not implemented") || r.Len() != int(r.Size()) {
		t.Errorf("unpackLayer without openat2 = %v, %d bytes read; want errNotInProcess (ENOSYS), none", err, int(r.Size())-r.Len())
	}
}

// refuseOpenat2 makes openat2 fail with ENOSYS on the calling thread.
func refuseOpenat2() error {
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_OPENAT2, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return errno
	}
	return nil
}
