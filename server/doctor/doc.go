// Package doctor owns crib's host prerequisite checks: it looks at a host
// (files under /proc, /sys, /etc, /dev, the programs on PATH, and two small
// probes that run something), says for every prerequisite whether it is met,
// and for every unmet one what is wrong and the exact command that fixes it.
// `crib doctor` prints the Report; `crib serve` runs the same checks and
// refuses to start, with the same words (Report.Err), when a hard requirement
// fails. Other packages read Report.Features to pick what the host supports
// (storage driver, OCI runtimes, outbound helper, cgroup access).
//
// This package must not change the host: it never writes outside a
// temporary directory of its own, never mounts outside a namespace it
// creates, and never starts anything that outlives a check. Fixes are
// printed, not applied.
//
// The checks, by ID (hard = crib serve refuses to start when it fails;
// rootless unless noted):
//
//	subuid           /etc/subuid gives the user >= 65536 ids (hard)
//	subgid           /etc/subgid gives the user >= 65536 ids (hard)
//	newuidmap        present, and setuid root or with the cap_setuid file capability (hard)
//	newgidmap        present, and setuid root or with the cap_setgid file capability (hard)
//	userns           user.max_user_namespaces > 0 (and Debian's
//	                 kernel.unprivileged_userns_clone not 0) (hard)
//	apparmor-userns  kernel.apparmor_restrict_unprivileged_userns is not 1 (hard)
//	runc             runc found, runs, and works on this cgroup layout
//	crun             crun found, runs, and works on this cgroup layout: rootless
//	                 anywhere (on v1 crib's mount namespace gets a cgroup view);
//	                 rootful on v2, or on pure v1 with crib at every hierarchy's root
//	oci-runtime      at least one of runc/crun usable, and the configured default is (hard,
//	                 also as root); auto picks crun where it works, and says why
//	conmon           the container monitor is present and runs (hard, also as root)
//	overlay          native overlay mounts inside a user namespace (as root: at all)
//	fuse-overlayfs   fuse-overlayfs present and /dev/fuse openable by the user
//	cgroup           cgroup version; v2: the user's own cgroup is delegated (owned by the
//	                 user) with its controllers; v1: the per-controller cgroups are
//	                 writable by the user. Without them pods run unconfined.
//	outbound         slirp4netns or pasta present and /dev/net/tun openable by the user
//	cni-plugins      bridge, host-local, portmap, loopback in the configured plugin dirs
//	                 (without them NetworkReady stays false)
//	selinux          SELinux state (/sys/fs/selinux) and the container policy when enforcing
//	xdg-runtime-dir  XDG_RUNTIME_DIR set, existing, owned by the user, mode 0700
//	linger           with systemd, lingering enabled (/var/lib/systemd/linger/USER)
//	recovery         informational, also as root: what the daemon's last start-up
//	                 recovery re-attached, marked exited and cleaned (RUNROOT/recovered.json)
//
// As root, the subuid, newuidmap, outbound, xdg-runtime-dir and linger checks
// pass with "not needed as root", and only oci-runtime and conmon are hard.
package doctor
