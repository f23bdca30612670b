// Package nri owns crib's NRI plugin host: the Node Resource Interface of
// github.com/containerd/nri, through the module's runtime adaptation (the
// library containerd and CRI-O use), not a protocol of crib's own.
//
// The host starts pre-installed plugins from the plugin directory, accepts
// external plugins on the NRI socket, synchronises each plugin that
// registers with the pods and containers that exist, relays the pod and
// container events in the order NRI defines, and applies the adjustments
// plugins return to a container's OCI spec before the container is
// created (and to resource updates).
//
// Rootless, every plugin runs as the user that runs crib, inside crib's
// namespaces: crib's daemon is the root of its user namespace, so a
// pre-installed plugin it starts is that user with no capability over the
// host, sees the node's (crib's) PID and network namespaces, where the
// pods are, and reads the same paths the OCI runtime will. External
// plugins reach the socket in crib's runroot, a 0700 directory of that
// user, and the socket itself is 0600: nobody else can connect. An
// adjustment that cannot apply without real root (a device the user cannot
// open, a lower oom_score_adj, a higher hard rlimit) is refused by a
// built-in validator that names the plugin that asked for it.
//
// The currency is plain data (Pod, Container, the CRI config messages and
// OCI specs); the package knows nothing of sandbox, runtime or storage. A
// nil *Host is NRI turned off: every event is then a no-op.
package nri
