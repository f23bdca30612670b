package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/mountinfo"
)

// A container of a pod with its own user namespace needs its files shown
// with the pod's ids. Its root file system already is (storage gives it a
// copy of the image chowned to the pod's ids: overlay, whatever its
// layers, cannot be idmapped on this kernel, and crib's user namespace
// cannot idmap the host's disk). Its volumes are idmapped where the
// kernel allows: a file system crib's user namespace mounted and that
// supports idmapped mounts (tmpfs: a memory emptyDir, the pod's shm).
// runc 1.1 predates idmapped mounts in the OCI spec, so crib makes them
// itself (open_tree, mount_setattr with MOUNT_ATTR_IDMAP, move_mount)
// under the bundle's idmap/ directory and hands runc those paths as
// plain binds. A file crib's id N owns then appears owned by the pod's id
// N, and what the pod's root writes there lands as crib's id 0.
//
// A volume that cannot be idmapped (the host's disk: hostPath, a disk
// emptyDir, configMap and secret files, logs; overlay image volumes) is
// bound as it is. Its files keep ids the pod does not map, so the pod's
// root gets what their mode grants everyone else (an emptyDir is 0777,
// configMap files 0644), never an owner's or a capability's rights over
// them: no file of crib or of another pod becomes writable.

// UsernsRootDir is where the root file systems of user-namespaced
// containers are bound for runc, which mounts the rootfs from inside the
// pod's user namespace: to the pod's root every directory of crib's
// (mode 0700, owned by an id the pod does not map) is closed, so the path
// runc gets must cross only directories everyone may traverse. It is a
// directory under parent named after crib's runroot, with a tmpfs crib
// mounts over it in its own mount namespace. The daemon picks parent
// (crib's own copy of /run where it has one, so the host sees nothing;
// else /tmp, where the host sees an empty directory), makes it at start
// (EnsureUsernsRoot) and names it in Status.
func UsernsRootDir(parent, runRoot string) string {
	sum := sha256.Sum256([]byte(runRoot))
	return filepath.Join(parent, "crib-userns-"+hex.EncodeToString(sum[:8]))
}

// EnsureUsernsRoot makes dir (UsernsRootDir) with crib's tmpfs on it.
func EnsureUsernsRoot(dir string) error { return ensureUsernsRoot(dir) }

// ensureUsernsRoot makes the user-namespace root: a directory of crib's own (never
// one another user left there, nor a symlink), with crib's tmpfs on it.
func ensureUsernsRoot(dir string) error {
	if err := os.Mkdir(dir, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%s is not a directory of crib's own (mode %o, owner %d): remove it", dir, st.Mode, st.Uid)
	}
	points, err := mountinfo.Points()
	if err != nil {
		return err
	}
	if slices.Contains(points, dir) {
		return nil // crib's tmpfs, mounted by an earlier start or create
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0711,size=1m"); err != nil {
		return fmt.Errorf("mounting crib's tmpfs on %s: %w", dir, err)
	}
	return nil
}

// bindUsernsRoot binds the container's rootfs under dir (UsernsRootDir)
// and points the spec at it.
func bindUsernsRoot(dir, id string, s *specs.Spec) error {
	if err := ensureUsernsRoot(dir); err != nil {
		return fmt.Errorf("preparing a root file system path the pod's user namespace can reach: %w", err)
	}
	target := filepath.Join(dir, id)
	if err := os.Mkdir(target, 0o711); err != nil {
		return err
	}
	if err := unix.Mount(s.Root.Path, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		os.Remove(target)
		return fmt.Errorf("binding the root file system %s on %s: %w", s.Root.Path, target, err)
	}
	s.Root.Path = target
	return nil
}

// unbindUsernsRoot undoes bindUsernsRoot; a container without one is fine.
func unbindUsernsRoot(dir, id string) error {
	if dir == "" {
		return nil
	}
	target := filepath.Join(dir, id)
	for range 8 {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmounting %s: %w", target, err)
			}
			break
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// idmapDir is where a bundle's idmapped mounts live.
func idmapDir(bundle string) string { return filepath.Join(bundle, "idmap") }

// idmapMounts replaces the spec's bind sources by idmapped mounts where
// the kernel allows, when the spec joins a user namespace by path. On
// error nothing stays mounted.
func idmapMounts(bundle, usernsRoot string, s *specs.Spec, log *slog.Logger) (retErr error) {
	userns := specUserNamespace(s)
	if userns == "" {
		return nil
	}
	ns, err := os.Open(userns)
	if err != nil {
		return fmt.Errorf("opening the pod's user namespace: %w", err)
	}
	defer ns.Close()
	dir := idmapDir(bundle)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, unmountIdmapped(bundle, usernsRoot))
		}
	}()
	if err := bindUsernsRoot(usernsRoot, filepath.Base(bundle), s); err != nil {
		return err
	}
	for i := range s.Mounts {
		m := &s.Mounts[i]
		if !isBind(*m) {
			continue
		}
		target := filepath.Join(dir, strconv.Itoa(i))
		if err := idmapMount(m.Source, target, int(ns.Fd())); err != nil {
			log.Debug("volume bound without an idmap", "source", m.Source, "destination", m.Destination, "err", err)
			continue
		}
		m.Source = target
	}
	return nil
}

func specUserNamespace(s *specs.Spec) string {
	if s.Linux == nil {
		return ""
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return ns.Path
		}
	}
	return ""
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// idmapMount clones the mount tree at src, idmaps it with the user
// namespace usernsFD and attaches it at target (created as a file or a
// directory like src).
func idmapMount(src, target string, usernsFD int) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(usernsFD)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("mount_setattr MOUNT_ATTR_IDMAP on %s: %w", src, err)
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.IsDir() {
		err = os.Mkdir(target, 0o700)
	} else {
		err = os.WriteFile(target, nil, 0o600)
	}
	if err != nil {
		return err
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		os.Remove(target)
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// unmountIdmapped detaches every idmapped mount of a bundle and removes
// their mount points. It must succeed before the bundle is deleted: a
// recursive delete would otherwise walk into the pod's volumes.
func unmountIdmapped(bundle, usernsRoot string) error {
	if err := unbindUsernsRoot(usernsRoot, filepath.Base(bundle)); err != nil {
		return err
	}
	dir := idmapDir(bundle)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		// Stacked mounts (a second create on the same path) go too.
		for range 8 {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
				}
				break
			}
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, os.Remove(dir))
	}
	return errors.Join(errs...)
}

// removeBundle deletes a bundle once nothing is mounted inside it.
func removeBundle(bundle, usernsRoot string) error {
	if err := unmountIdmapped(bundle, usernsRoot); err != nil {
		return fmt.Errorf("unmounting the idmapped mounts of %s (the bundle stays): %w", bundle, err)
	}
	return os.RemoveAll(bundle)
}
