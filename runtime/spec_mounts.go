package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Options shared by the kernel filesystems mounted into every container.
var (
	nosuidNoexecNodev = []string{"nosuid", "noexec", "nodev"}
	// extraBindOptions are the CRI mount_options crib passes through; they
	// only ever restrict or tune a bind mount.
	extraBindOptions = []string{
		"nosuid", "suid", "nodev", "dev", "noexec", "exec",
		"noatime", "atime", "nodiratime", "diratime", "relatime", "norelatime",
		"strictatime", "nostrictatime",
	}
)

// setMounts lays out, in mount order: the kernel filesystems, the pod's
// files (hostname, hosts, resolv.conf, shm), then the request's mounts
// sorted so that a parent is mounted before what lies inside it. A request
// mount at the same destination as a default one replaces it (the kubelet
// sends its own /etc/hosts, for example).
func (b *specBuilder) setMounts() error {
	requested, err := b.requestMounts()
	if err != nil {
		return err
	}
	taken := map[string]bool{}
	for _, m := range requested {
		taken[m.Destination] = true
	}
	var mounts []specs.Mount
	for _, m := range slices.Concat(b.systemMounts(), b.podFileMounts()) {
		if !taken[m.Destination] {
			mounts = append(mounts, m)
		}
	}
	b.spec.Mounts = append(mounts, requested...)
	return nil
}

// hasNamespace reports whether the spec gives the container its own (or
// the pod's) namespace of that type, as opposed to the host's.
func (b *specBuilder) hasNamespace(t specs.LinuxNamespaceType) bool {
	return slices.ContainsFunc(b.spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
}

// systemMounts are /proc, /dev, /dev/pts, /dev/mqueue, /sys and
// /sys/fs/cgroup. In a user namespace the kernel lets crib mount proc,
// mqueue and sysfs only for the PID, IPC and network namespaces its own
// user namespace owns; for the host's it must bind the host's mount instead.
func (b *specBuilder) systemMounts() []specs.Mount {
	access := b.sysAccess()
	ms := []specs.Mount{b.procMount(),
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
	}
	if b.in.Rootless && !b.hasNamespace(specs.IPCNamespace) {
		// A host without an mqueue mount has nothing to share.
		if b.probes.exists("/dev/mqueue") {
			ms = append(ms, bindMount("/dev/mqueue", "/dev/mqueue", "nosuid", "noexec", "nodev"))
		}
	} else {
		ms = append(ms, specs.Mount{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: slices.Clone(nosuidNoexecNodev)})
	}
	if b.in.Rootless && !b.hasNamespace(specs.NetworkNamespace) {
		ms = append(ms, bindMount("/sys", "/sys", "nosuid", "noexec", "nodev", access))
	} else {
		ms = append(ms, specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: append(slices.Clone(nosuidNoexecNodev), access)})
	}
	// In its own cgroup namespace (owned by crib's user namespace) a
	// container may mount cgroupfs itself, which shows its own subtree;
	// otherwise only the host's mount can be bound in.
	if b.in.Rootless && !b.hasNamespace(specs.CgroupNamespace) {
		ms = append(ms, bindMount("/sys/fs/cgroup", "/sys/fs/cgroup", "nosuid", "noexec", "nodev", access))
	} else {
		ms = append(ms, specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: append(slices.Clone(nosuidNoexecNodev), "relatime", access)})
	}
	return ms
}

// sysAccess is "rw" for privileged containers, which the CRI says get
// writable sysfs and cgroupfs, and "ro" for the rest.
func (b *specBuilder) sysAccess() string {
	if b.privileged() {
		return "rw"
	}
	return "ro"
}

func (b *specBuilder) procMount() specs.Mount {
	if b.in.Rootless && !b.hasNamespace(specs.PIDNamespace) {
		return bindMount("/proc", "/proc", "nosuid", "noexec", "nodev")
	}
	return specs.Mount{Destination: "/proc", Type: "proc", Source: "proc", Options: slices.Clone(nosuidNoexecNodev)}
}

// podFileMounts bind the files the sandbox wrote for the pod. They follow
// the rootfs: read-only when it is. /dev/shm is always writable.
func (b *specBuilder) podFileMounts() []specs.Mount {
	access := "rw"
	if b.spec.Root.Readonly {
		access = "ro"
	}
	f := b.in.PodFiles
	var ms []specs.Mount
	switch {
	case f.Shm != "":
		ms = append(ms, bindMount("/dev/shm", f.Shm, "rprivate", "nosuid", "noexec", "nodev", "rw"))
	case !b.hasNamespace(specs.IPCNamespace):
		ms = append(ms, bindMount("/dev/shm", "/dev/shm", "rprivate", "nosuid", "noexec", "nodev", "rw"))
	default:
		ms = append(ms, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	for _, file := range []struct{ dst, src string }{
		{"/etc/hostname", f.Hostname},
		{"/etc/hosts", f.Hosts},
		{"/etc/resolv.conf", f.ResolvConf},
	} {
		if file.src != "" {
			ms = append(ms, bindMount(file.dst, file.src, "rprivate", access))
		}
	}
	return ms
}

func bindMount(dst, src string, options ...string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, options...)}
}

// requestMounts converts the CRI mounts, sorted by depth of destination.
func (b *specBuilder) requestMounts() ([]specs.Mount, error) {
	var out []specs.Mount
	seen := map[string]bool{}
	for _, m := range b.in.Config.GetMounts() {
		sm, err := b.requestMount(m)
		if err != nil {
			return nil, fmt.Errorf("mount %q: %w", m.GetContainerPath(), err)
		}
		if seen[sm.Destination] {
			return nil, fmt.Errorf("%w: two mounts at %q", errdefs.ErrInvalidArgument, sm.Destination)
		}
		seen[sm.Destination] = true
		out = append(out, sm)
		if m.GetRecursiveReadOnly() && !b.in.Host.RecursiveReadOnly {
			subs, err := b.readOnlySubmounts(sm)
			if err != nil {
				return nil, fmt.Errorf("mount %q: %w", m.GetContainerPath(), err)
			}
			out = append(out, subs...)
		}
	}
	slices.SortStableFunc(out, func(a, b specs.Mount) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	return out, nil
}

func (b *specBuilder) requestMount(m *runtimeapi.Mount) (specs.Mount, error) {
	dst, err := containerPath(m.GetContainerPath())
	if err != nil {
		return specs.Mount{}, err
	}
	if err := b.checkMountIDMap(m); err != nil {
		return specs.Mount{}, err
	}
	readonly := m.GetReadonly()
	var src string
	if ref := m.GetImage().GetImage(); ref != "" {
		if m.GetHostPath() != "" {
			return specs.Mount{}, fmt.Errorf("%w: both host_path and image are set", errdefs.ErrInvalidArgument)
		}
		readonly = true // image volumes are read-only by definition
		src, err = b.imageVolumeSource(ref, m.GetImageSubPath())
	} else {
		src, err = hostSource(m.GetHostPath())
	}
	if err != nil {
		return specs.Mount{}, err
	}
	opts, err := b.bindOptions(m, src, readonly)
	if err != nil {
		return specs.Mount{}, err
	}
	if m.GetSelinuxRelabel() && b.in.Host.SELinuxEnabled && b.in.MountLabel != "" && m.GetImage().GetImage() == "" {
		if err := b.probes.relabel(src, b.in.MountLabel); err != nil {
			return specs.Mount{}, fmt.Errorf("relabel %s: %w", src, err)
		}
	}
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}, nil
}

func containerPath(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%w: container path %q is not absolute", errdefs.ErrInvalidArgument, p)
	}
	if hasDotDot(p) {
		return "", fmt.Errorf("%w: container path %q contains \"..\"", errdefs.ErrInvalidArgument, p)
	}
	return path.Clean(p), nil
}

// hostSource checks a host path and resolves its symlinks, as the CRI asks
// (the real destination is mounted). A path with a ".." element is refused
// outright: Kubernetes never sends one, and it is how a path climbs out of
// a directory the caller meant to confine it to.
func hostSource(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("%w: no host path", errdefs.ErrInvalidArgument)
	case !filepath.IsAbs(p):
		return "", fmt.Errorf("%w: host path %q is not absolute", errdefs.ErrInvalidArgument, p)
	case hasDotDot(p):
		return "", fmt.Errorf("%w: host path %q escapes through \"..\"", errdefs.ErrInvalidArgument, p)
	}
	resolved, err := filepath.EvalSymlinks(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: host path %q does not exist", errdefs.ErrInvalidArgument, p)
	}
	if err != nil {
		return "", fmt.Errorf("resolve host path %q: %w", p, err)
	}
	return resolved, nil
}

// imageVolumeSource finds the host path where the caller mounted the image,
// and the sub path inside it, which may not climb out of the image.
func (b *specBuilder) imageVolumeSource(ref, sub string) (string, error) {
	root, ok := b.in.ImageVolumes[ref]
	if !ok {
		return "", fmt.Errorf("%w: image volume %q is not mounted", errdefs.ErrInvalidArgument, ref)
	}
	if sub == "" {
		return root, nil
	}
	if filepath.IsAbs(sub) || hasDotDot(sub) {
		return "", fmt.Errorf("%w: image_sub_path %q escapes the image", errdefs.ErrInvalidArgument, sub)
	}
	p, err := securejoin.SecureJoin(root, sub)
	if err != nil {
		return "", fmt.Errorf("resolve image_sub_path %q: %w", sub, err)
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: image_sub_path %q does not exist in image %q", errdefs.ErrInvalidArgument, sub, ref)
	} else if err != nil {
		return "", fmt.Errorf("image_sub_path %q: %w", sub, err)
	}
	return p, nil
}

// bindOptions turns the CRI flags into OCI bind options: propagation,
// access, recursive read-only and the pass-through mount_options.
func (b *specBuilder) bindOptions(m *runtimeapi.Mount, src string, readonly bool) ([]string, error) {
	if m.GetRecursiveReadOnly() {
		if err := b.checkRecursiveReadOnly(m); err != nil {
			return nil, err
		}
	}
	prop, err := b.propagation(m.GetPropagation(), src)
	if err != nil {
		return nil, err
	}
	opts := []string{"rbind", prop}
	if readonly {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	if m.GetRecursiveReadOnly() && b.in.Host.RecursiveReadOnly {
		opts = append(opts, "rro")
	}
	for _, o := range m.GetMountOptions() {
		if !slices.Contains(extraBindOptions, o) {
			return nil, fmt.Errorf("%w: mount option %q is not allowed (allowed: %s)", errdefs.ErrInvalidArgument, o, strings.Join(extraBindOptions, ", "))
		}
		opts = append(opts, o)
	}
	return opts, nil
}

func (b *specBuilder) checkRecursiveReadOnly(m *runtimeapi.Mount) error {
	switch {
	case !m.GetReadonly():
		return fmt.Errorf("%w: recursive_read_only needs readonly", errdefs.ErrInvalidArgument)
	case m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		return fmt.Errorf("%w: recursive_read_only needs private propagation, not %s", errdefs.ErrInvalidArgument, m.GetPropagation())
	}
	return nil
}

// readOnlySubmounts emulates a recursive read-only bind where the kernel or
// the OCI runtime lacks "rro" (runc 1.1): the rbind brings the source's
// submounts along writable, so each gets a bind of its own, read-only, at
// the same place. A submount made after the container starts is not
// covered; "rro" proper has the same limit for mounts that propagate in,
// which the private propagation rro requires rules out anyway.
func (b *specBuilder) readOnlySubmounts(bind specs.Mount) ([]specs.Mount, error) {
	entries, err := b.probes.mounts()
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	var out []specs.Mount
	seen := map[string]bool{}
	for _, e := range entries {
		rel, ok := strings.CutPrefix(e.Mountpoint, bind.Source+"/")
		if !ok || rel == "" || seen[rel] {
			continue
		}
		seen[rel] = true
		out = append(out, specs.Mount{
			Destination: path.Join(bind.Destination, rel),
			Type:        "bind",
			Source:      e.Mountpoint,
			Options:     []string{"bind", "rprivate", "ro"},
		})
	}
	slices.SortStableFunc(out, func(a, b specs.Mount) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	return out, nil
}

// propagation maps the CRI mode to an OCI option. rslave and rshared only
// work when the host mount holding the source propagates: a private source
// mount would silently give a private volume, so it is refused. They also
// set the rootfs propagation the runtime needs to pass events along.
func (b *specBuilder) propagation(p runtimeapi.MountPropagation, src string) (string, error) {
	switch p {
	case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		return "rprivate", nil
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		mp, shared, slave, err := b.mountPropagation(src)
		if err != nil {
			return "", err
		}
		if !shared && !slave {
			return "", fmt.Errorf("%w: rslave propagation needs %q to be on a shared or slave mount, but its mount %q is private (make it with mount --make-rshared)", errdefs.ErrInvalidArgument, src, mp)
		}
		if b.spec.Linux.RootfsPropagation != "rshared" {
			b.spec.Linux.RootfsPropagation = "rslave"
		}
		return "rslave", nil
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		mp, shared, _, err := b.mountPropagation(src)
		if err != nil {
			return "", err
		}
		if !shared {
			return "", fmt.Errorf("%w: rshared propagation needs %q to be on a shared mount, but its mount %q is not shared (make it with mount --make-rshared)", errdefs.ErrInvalidArgument, src, mp)
		}
		b.spec.Linux.RootfsPropagation = "rshared"
		return "rshared", nil
	default:
		return "", fmt.Errorf("%w: unknown mount propagation %d", errdefs.ErrInvalidArgument, p)
	}
}

// mountPropagation finds the mount holding path (the deepest mount point
// above it; the last one listed when mounts are stacked) and reads its
// propagation from the mountinfo optional fields.
func (b *specBuilder) mountPropagation(p string) (mountpoint string, shared, slave bool, err error) {
	entries, err := b.probes.mounts()
	if err != nil {
		return "", false, false, fmt.Errorf("read the mount table: %w", err)
	}
	best := -1
	for i, e := range entries {
		if !pathWithin(p, e.Mountpoint) {
			continue
		}
		if best < 0 || len(e.Mountpoint) >= len(entries[best].Mountpoint) {
			best = i
		}
	}
	if best < 0 {
		return "", false, false, fmt.Errorf("no mount holds %q", p)
	}
	e := entries[best]
	for _, f := range strings.Fields(e.Optional) {
		shared = shared || strings.HasPrefix(f, "shared:")
		slave = slave || strings.HasPrefix(f, "master:")
	}
	return e.Mountpoint, shared, slave, nil
}

// pathWithin reports whether p is dir or lies under it.
func pathWithin(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// hasDotDot reports whether a path has a ".." element.
func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(filepath.ToSlash(p), "/"), "..")
}

// checkMountIDMap admits the ID mappings the kubelet puts on every mount
// of a pod with its own user namespace: the pod's mapping, which crib
// applies to all of that pod's mounts where the file system allows
// (idmapMounts). Any other mapping is not implemented.
func (b *specBuilder) checkMountIDMap(m *runtimeapi.Mount) error {
	if len(m.GetUidMappings())+len(m.GetGidMappings()) == 0 {
		return nil
	}
	pod := b.in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	if b.in.Namespaces.User != "" && sameIDMap(m.GetUidMappings(), pod.GetUids()) && sameIDMap(m.GetGidMappings(), pod.GetGids()) {
		return nil
	}
	return fmt.Errorf("%w: ID-mapped mounts other than with the pod's own user-namespace mapping", errdefs.ErrUnimplemented)
}

func sameIDMap(a, b []*runtimeapi.IDMapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].GetContainerId() != b[i].GetContainerId() || a[i].GetHostId() != b[i].GetHostId() || a[i].GetLength() != b[i].GetLength() {
			return false
		}
	}
	return true
}
