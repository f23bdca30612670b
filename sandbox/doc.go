// Package sandbox owns pod sandboxes: the network, IPC and UTS namespaces a
// pod's containers join (created by crib and pinned by bind mounts, no
// pause image), the PID-namespace reaper of pods that share one, CNI
// networking and host ports, the hostname, hosts, resolv.conf and /dev/shm
// files containers mount, the pod cgroup, the pod's SELinux label, pod
// statistics, and the durable record of each pod. A pod that asks for
// its own user namespace (hostUsers: false) gets it nested in crib's,
// with its mapping in crib's ids, owning the pod's other namespaces
// (userns.go).
//
// It takes k8s.io/cri-api runtime v1 messages (PodSandboxConfig) as plain
// data and returns CRI stats messages, the currency shared below the cri
// package; errors wrap internal/errdefs sentinels, never gRPC statuses.
// It must not run container processes (package runtime does) and must not
// know about gRPC.
//
// Durable records live under Options.Root/sandboxes/<id>/; everything that
// must not survive a reboot (namespace pins, shm, generated files) under
// Options.RunRoot/sandboxes/<id>/. Create either finishes or undoes every
// step it took; Stop and Remove may be repeated and resumed after a crash;
// Recover reconciles the two directories at start-up.
package sandbox
