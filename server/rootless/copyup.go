package rootless

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/mountinfo"
)

// HostEntriesDir is where, inside a copied-up directory, the host's own
// directory stays reachable: the entries crib links rather than binds
// point into it.
const HostEntriesDir = ".crib-host"

// copyUpOnce makes the copies rootless.copy_up lists, in namespaces that
// do not have them yet.
func copyUpOnce(cfg config.Config, log *slog.Logger) error {
	keep := []string{cfg.Root, cfg.RunRoot, filepath.Dir(cfg.Listen)}
	pending := notCopiedUp(cfg.Rootless.CopyUp)
	if len(pending) == 0 {
		return nil
	}
	mounts, err := mountPoints()
	if err != nil {
		return err
	}
	for _, d := range keep {
		if holdsMount(d, mounts) {
			// Namespaces an older crib made, with pods in them: copying up
			// now would give their mounts a second path that crib never
			// unmounts.
			log.Warn("crib's namespaces predate rootless.copy_up and hold mounts: no copy-up until they are made again (crib stopped with no pods)", "under", d)
			return nil
		}
	}
	return copyUpAll(pending, keep)
}

// copyUpAll copies up each directory of dirs in crib's mount namespace (see
// copyUp). keep lists paths crib itself mounts under (its root and runroot):
// the directories on their way are bound rather than linked, so that a
// mount made there shows in mountinfo under the path crib asked for.
func copyUpAll(dirs, keep []string) error {
	for _, dir := range dirs {
		if err := copyUp(dir, keep); err != nil {
			return fmt.Errorf("copying up %s in crib's mount namespace: %w", dir, err)
		}
	}
	return nil
}

// copyUp replaces dir, in the calling process's mount namespace, with a
// tmpfs that holds every entry the host has there, so that new entries can
// be made in it while the host's stay as the host has them (rootlesskit's
// --copy-up, done our way):
//   - the host's directory stays reachable at dir/.crib-host (a recursive
//     clone: a user namespace may not take part of a tree it inherited);
//   - symlinks are copied as they are;
//   - sub-directories that hold mounts, or lead to a path in keep, and
//     files that are mount points, are bound at their own path;
//   - everything else becomes a symlink into dir/.crib-host: no mount per
//     entry, since every container crib creates copies the mount table.
//
// A directory already copied up is left alone (a restarted crib rejoins
// its namespaces); one that does not exist, or is a symlink, is skipped.
// On failure the tmpfs is unmounted again, so dir is as it was.
func copyUp(dir string, keep []string) (retErr error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return nil
	}
	if err != nil {
		return err
	}
	if CopiedUp(dir) {
		return nil
	}
	// The host's tree is cloned before the tmpfs covers it: a bind made
	// afterwards from the covered path would carry the tmpfs along.
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("cloning the host's tree: %w", err)
	}
	defer unix.Close(tree)
	mode := fmt.Sprintf("mode=%o", fi.Mode().Perm())
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, mode); err != nil {
		return fmt.Errorf("mounting a tmpfs: %w", err)
	}
	defer func() {
		if retErr != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	}()
	hidden := filepath.Join(dir, HostEntriesDir)
	if err := os.Mkdir(hidden, 0o755); err != nil {
		return err
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, hidden, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("placing the host's tree at %s: %w", hidden, err)
	}
	mounts, err := mountPoints()
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(hidden)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := copyEntry(dir, e, mounts, keep); err != nil {
			return err
		}
	}
	return nil
}

// copyEntry recreates one host entry of dir in the tmpfs now over it.
func copyEntry(dir string, e os.DirEntry, mounts map[string]bool, keep []string) error {
	name := e.Name()
	dst := filepath.Join(dir, name)
	src := filepath.Join(dir, HostEntriesDir, name)
	switch {
	case e.Type()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case mounts[src] || (e.IsDir() && (holdsMount(src, mounts) || leadsTo(dst, keep))):
		return bindAt(src, dst, e.IsDir())
	default:
		return os.Symlink(src, dst)
	}
}

// bindAt makes dst (a new directory or empty file) and binds src on it,
// recursively: a user namespace may not bind part of a tree it inherited.
func bindAt(src, dst string, isDir bool) error {
	if isDir {
		if err := os.Mkdir(dst, 0o755); err != nil {
			return err
		}
	} else if err := os.WriteFile(dst, nil, 0o644); err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding the host's %s: %w", dst, err)
	}
	return nil
}

// notCopiedUp returns the directories of dirs that copyUp would still
// change: existing directories not copied up yet.
func notCopiedUp(dirs []string) []string {
	var out []string
	for _, d := range dirs {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && !CopiedUp(d) {
			out = append(out, d)
		}
	}
	return out
}

// CopiedUp reports whether dir is already a copy made by copyUp.
func CopiedUp(dir string) bool {
	mounted, _ := isMounted(dir)
	if !mounted {
		return false
	}
	fi, err := os.Lstat(filepath.Join(dir, HostEntriesDir))
	return err == nil && fi.IsDir()
}

// mountPoints is the set of mount points in the calling process's mount
// namespace.
func mountPoints() (map[string]bool, error) {
	points, err := mountinfo.Points()
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(points))
	for _, p := range points {
		set[p] = true
	}
	return set, nil
}

// holdsMount reports whether a mount point lies below dir.
func holdsMount(dir string, mounts map[string]bool) bool {
	for m := range mounts {
		if strings.HasPrefix(m, dir+"/") {
			return true
		}
	}
	return false
}

// leadsTo reports whether dir is one of paths or on the way to one.
func leadsTo(dir string, paths []string) bool {
	for _, p := range paths {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}
