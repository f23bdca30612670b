package rootless

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The OCI runtimes' binaries, bound read-only in crib's mount namespace.
//
// crun (1.8, and runc's init, from the same code) defends against
// CVE-2019-5736, a container overwriting the runtime's binary through
// /proc/self/exe, by copying its own binary into a sealed memfd and
// re-executing itself from there at every start, unless the binary is
// already safe: a sealed memfd, or a file on a read-only mount. The copy
// and the second exec cost about 3 ms of every crun command crib runs
// (create, start, exec, kill, delete), each StartContainer and ExecSync.
// crib's rootless child owns its mount namespace, so it binds each
// runtime's binary read-only at RUNROOT/bin/HANDLER/NAME and runs it from
// there: the runtime sees a read-only mount and skips the copy, and the
// defence holds (nothing writes through a read-only mount; the binary is
// root's on the host besides, out of reach of crib's user namespace).

// ReadOnlyBinary binds the file at path read-only at dir/base(path) and
// returns that path. A bind left by a previous daemon in the same
// namespace is replaced, so an upgraded binary is the one run.
func ReadOnlyBinary(dir, path string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	target := filepath.Join(dir, filepath.Base(path))
	for {
		mounted, err := isMounted(target)
		if err != nil {
			return "", err
		}
		if !mounted {
			break
		}
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			return "", fmt.Errorf("unmounting the previous %s: %w", target, err)
		}
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o500)
	if err != nil {
		return "", err
	}
	f.Close()
	if err := unix.Mount(path, target, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("binding %s at %s: %w", path, target, err)
	}
	// A remount must keep the flags the mount it came from is locked
	// with (nosuid, nodev, noexec, atime); the ST_ values of statfs are
	// the MS_ ones.
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		unix.Unmount(target, unix.MNT_DETACH)
		return "", err
	}
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|keep, ""); err != nil {
		unix.Unmount(target, unix.MNT_DETACH)
		return "", fmt.Errorf("making %s read-only: %w", target, err)
	}
	return target, nil
}
