package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
)

// setDevices gives the container the requested host devices and, when
// privileged, all of the host's. Rootful, each becomes a device node the
// runtime creates plus a device-cgroup rule. Rootless, nodes cannot be
// created (mknod needs real root) and the device cgroup is not ours to
// program, so each device is bind-mounted from the host instead; access is
// then whatever the host's node permissions give crib's user.
func (b *specBuilder) setDevices() error {
	if len(b.in.Config.GetCDIDevices()) > 0 {
		return fmt.Errorf("%w: CDI devices", errdefs.ErrUnimplemented)
	}
	requested, err := b.requestedDevices()
	if err != nil {
		return err
	}
	all := requested
	if b.privileged() {
		all = slices.Concat(requested, b.hostDevicesNotIn(requested))
	}
	for _, d := range all {
		b.addDevice(d)
	}
	if !b.in.Rootless {
		b.spec.Linux.Resources = &specs.LinuxResources{Devices: b.deviceRules(requested)}
	}
	return nil
}

// device is one device to expose: the node's facts (Path is the container
// path), where it lives on the host, and the cgroup access it gets.
type device struct {
	node     specs.LinuxDevice
	hostPath string
	access   string
}

func (b *specBuilder) requestedDevices() ([]device, error) {
	var out []device
	for _, d := range b.in.Config.GetDevices() {
		dev, err := b.requestedDevice(d.GetHostPath(), d.GetContainerPath(), d.GetPermissions())
		if err != nil {
			return nil, fmt.Errorf("device %q: %w", d.GetHostPath(), err)
		}
		out = append(out, dev)
	}
	return out, nil
}

func (b *specBuilder) requestedDevice(hostPath, ctrPath, perms string) (device, error) {
	if !filepath.IsAbs(hostPath) {
		return device{}, fmt.Errorf("%w: host path is not absolute", errdefs.ErrInvalidArgument)
	}
	dst, err := containerPath(ctrPath)
	if err != nil {
		return device{}, err
	}
	access, err := deviceAccess(perms)
	if err != nil {
		return device{}, err
	}
	node, err := b.probes.device(hostPath)
	if errors.Is(err, fs.ErrNotExist) {
		return device{}, fmt.Errorf("%w: no such device on the host", errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return device{}, err
	}
	node.Path = dst
	return device{node: node, hostPath: hostPath, access: access}, nil
}

// deviceAccess checks CRI device permissions: some of r, w, m; empty is all.
func deviceAccess(perms string) (string, error) {
	if perms == "" {
		return "rwm", nil
	}
	if strings.Trim(perms, "rwm") != "" {
		return "", fmt.Errorf("%w: device permissions %q: only r, w and m are allowed", errdefs.ErrInvalidArgument, perms)
	}
	return perms, nil
}

// runtimeDevices are the nodes every OCI runtime gives a container itself;
// listing them again makes runc fail in a user namespace (it opens the
// bound /dev/tty, which has no terminal behind it).
var runtimeDevices = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/console", "/dev/ptmx"}

// hostDevicesNotIn lists the host's devices that neither a request nor the
// runtime already puts at the same container path.
func (b *specBuilder) hostDevicesNotIn(requested []device) []device {
	var out []device
	for _, d := range b.in.Host.Devices {
		if slices.Contains(runtimeDevices, d.Path) || slices.ContainsFunc(requested, func(r device) bool { return r.node.Path == d.Path }) {
			continue
		}
		out = append(out, device{node: d, hostPath: d.Path, access: "rwm"})
	}
	return out
}

func (b *specBuilder) addDevice(d device) {
	if !b.in.Rootless {
		b.spec.Linux.Devices = append(b.spec.Linux.Devices, d.node)
		return
	}
	access := "ro"
	if strings.Contains(d.access, "w") {
		access = "rw"
	}
	b.spec.Mounts = append(b.spec.Mounts, specs.Mount{
		Destination: d.node.Path, Type: "bind", Source: d.hostPath,
		Options: []string{"bind", "nosuid", "noexec", access},
	})
}

// deviceRules deny every device, then allow the requested ones; the runtime
// adds its own defaults (null, zero, tty …). A privileged container may use
// any device.
func (b *specBuilder) deviceRules(requested []device) []specs.LinuxDeviceCgroup {
	if b.privileged() {
		return []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range requested {
		major, minor := d.node.Major, d.node.Minor
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: d.node.Type, Major: &major, Minor: &minor, Access: d.access})
	}
	return rules
}

// deviceAt describes the device node at a host path, following symlinks.
func deviceAt(p string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return specs.LinuxDevice{}, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, fmt.Errorf("%w: %s is not a device node", errdefs.ErrInvalidArgument, p)
	}
	mode := os.FileMode(st.Mode &^ unix.S_IFMT)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path: p, Type: typ,
		Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
		FileMode: &mode, UID: &uid, GID: &gid,
	}, nil
}

// skippedDevDirs hold nodes a container gets its own of (pts, shm, mqueue)
// or that are not devices at all.
var skippedDevDirs = []string{"/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd", "/dev/.lxc", "/dev/.lxd-mounts", "/dev/.udev"}

// HostDevices lists the device nodes under /dev, for HostInfo.Devices.
// The console is left out: the container gets its own terminal.
func HostDevices() ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir("/dev", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p != "/dev" && errors.Is(err, fs.ErrPermission) {
				return nil // a directory crib's user cannot read has no device it could use
			}
			return err
		}
		if e.IsDir() {
			if slices.Contains(skippedDevDirs, p) {
				return filepath.SkipDir
			}
			return nil
		}
		if p == "/dev/console" || e.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
			return nil
		}
		d, err := deviceAt(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking
		}
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list host devices: %w", err)
	}
	return out, nil
}
