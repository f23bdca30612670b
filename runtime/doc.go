// Package runtime owns containers: the OCI runtime spec generated from a CRI
// container configuration, running it with runc or crun through the monitor,
// exec, logs, stats and the container cgroups.
//
// Currency. Below the cri package, runtime and sandbox take the CRI v1
// configuration messages of k8s.io/cri-api/pkg/apis/runtime/v1
// (ContainerConfig, PodSandboxConfig, LinuxContainerResources …) as their
// input types, because those messages are plain data and re-declaring them
// would only add a lossy copy. This package never implements the gRPC
// services and never returns gRPC status errors: a failure a client can act
// on wraps one of the internal/errdefs sentinels with %w, and the cri package
// maps it to a status code once, at the boundary.
//
// Limits. runtime must not pull or mount images (storage does: the caller
// hands over a mounted rootfs and the image config) and must not know about
// pod networking (sandbox does: the pod's pinned namespaces, its hosts,
// resolv.conf, hostname and shm arrive as paths the caller filled in).
//
// Spec generation (GenerateSpec) is a function of its input: it reads only
// the container's rootfs (for /etc/passwd and /etc/group), the host paths the
// request names (to check they exist and how they are mounted) and seccomp
// profile files. It resolves nothing over the network. The one side effect
// is SELinux relabelling of mounts that ask for it, and only where SELinux
// is enabled.
//
// Privileged containers in a user namespace. When crib runs rootless, a
// "privileged" container gets what the user namespace allows and nothing
// more: the capabilities of crib's own bounding set (HostInfo.BoundingCaps),
// host devices bind-mounted rather than created, and writable sysfs and
// cgroupfs only as far as the kernel lets a user namespace write them
// (most of /sys stays read-only to it whatever the mount flags say).
//
// Execution (Manager). The OCI runtime and its monitor are reached only
// through package runtime/oci (Options.NewRuntime; every runc, crun and
// conmon command line is built there), so the life cycle is tested on
// its fake without root. Each container gets a monitor, conmon, which
// double-forks away from crib and starts the OCI runtime: containers
// therefore outlive crib, and a restarted crib re-attaches through the
// records under Root/containers and the exit files conmon writes under
// RunRoot/exits (watched with inotify). Logs are conmon's k8s-file format,
// the CRI log format. ExecSync is Exec into capped buffers; both call the
// OCI runtime's exec directly, which is cheaper than a round trip through
// the monitor. crib is a child
// subreaper (Reaper): it adopts orphaned monitors and exec'd processes and
// reaps them, because some hosts' PID 1 never does.
//
// No process outlives its container (census.go). Stop, Remove, a create's
// rollback and recovery end every process in the container's mount
// namespace, found through /proc: `runc kill --all` needs a cgroup, and a
// container in the node's PID namespace keeps what its init forked.
package runtime
