// Package cgroups owns the pod cgroups crib creates and the statistics read
// from them: a cgroupfs manager for cgroup v2 (a delegated subtree) and for
// cgroup v1 (an admin-delegated, chowned subtree per controller), and a
// "none" manager for hosts where crib may not write any cgroup.
//
// It only ever creates, limits, reads and removes cgroups below the base it
// detected; it must not move, limit or remove a cgroup it did not create,
// and it does not run processes (the OCI runtime places containers, using
// the path ContainerPath returns).
//
// Limits are taken as k8s.io/cri-api LinuxContainerResources, the plain-data
// currency shared by the packages below cri.
package cgroups
