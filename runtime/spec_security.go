package runtime

import (
	"fmt"
	"path"
	"slices"

	"github.com/crib-dev/crib/internal/errdefs"
)

// defaultMaskedPaths and defaultReadonlyPaths are the lists containerd and
// CRI-O (and the kubelet, for procMount Default) use.
var (
	defaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// setLSM sets no_new_privs and the AppArmor and SELinux labels. A
// privileged container runs without either label, as the CRI specifies.
func (b *specBuilder) setLSM() error {
	b.spec.Process.NoNewPrivileges = b.sc.GetNoNewPrivs()
	profile, err := b.appArmorProfile()
	if err != nil {
		return fmt.Errorf("apparmor: %w", err)
	}
	b.spec.Process.ApparmorProfile = profile
	if b.in.Host.SELinuxEnabled {
		if !b.privileged() {
			b.spec.Process.SelinuxLabel = b.in.ProcessLabel
		}
		b.spec.Linux.MountLabel = b.in.MountLabel
	}
	return nil
}

// appArmorProfile applies only localhost profiles. crib ships no AppArmor
// profile of its own (loading one needs privileges a rootless crib lacks),
// so runtime/default means no AppArmor confinement; seccomp, capabilities
// and the user namespace still apply. A named profile needs AppArmor on the
// host and the profile loaded, otherwise the request fails here rather than
// at start.
func (b *specBuilder) appArmorProfile() (string, error) {
	if b.privileged() {
		return "", nil
	}
	kind, name, err := requestedProfile(b.sc.GetApparmor(), b.sc.GetApparmorProfile())
	if err != nil {
		return "", err
	}
	if kind != profileLocalhost {
		return "", nil
	}
	if !b.in.Host.AppArmorEnabled {
		return "", fmt.Errorf("%w: AppArmor is not enabled on this host (profile %q requested)", errdefs.ErrInvalidArgument, name)
	}
	loaded, err := b.probes.appArmorLoaded(name)
	if err != nil {
		return "", fmt.Errorf("check profile %q: %w", name, err)
	}
	if !loaded {
		return "", fmt.Errorf("%w: AppArmor profile %q is not loaded", errdefs.ErrInvalidArgument, name)
	}
	return name, nil
}

// setMaskedPaths uses the request's lists when given and the defaults
// otherwise. The protobuf wire cannot tell an empty list from an absent one,
// so an empty list means the defaults too. A privileged container gets none.
func (b *specBuilder) setMaskedPaths() error {
	if b.privileged() {
		return nil
	}
	for _, p := range slices.Concat(b.sc.GetMaskedPaths(), b.sc.GetReadonlyPaths()) {
		if !path.IsAbs(p) {
			return fmt.Errorf("%w: masked or read-only path %q is not absolute", errdefs.ErrInvalidArgument, p)
		}
	}
	b.spec.Linux.MaskedPaths = listOrDefault(b.sc.GetMaskedPaths(), defaultMaskedPaths)
	b.spec.Linux.ReadonlyPaths = listOrDefault(b.sc.GetReadonlyPaths(), defaultReadonlyPaths)
	return nil
}

func listOrDefault(list, def []string) []string {
	if len(list) == 0 {
		return slices.Clone(def)
	}
	return slices.Clone(list)
}
