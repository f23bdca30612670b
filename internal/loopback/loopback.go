// Package loopback brings up the loopback interface of the calling
// thread's network namespace: crib's own namespace at start and each pod's
// new one. It must not grow into general network configuration (CNI does
// that).
package loopback

import "golang.org/x/sys/unix"

// Up sets "lo" up in the network namespace of the calling thread; callers
// that switched namespaces hold their OS thread locked.
func Up() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
