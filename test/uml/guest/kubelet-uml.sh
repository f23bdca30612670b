#!/bin/sh
# The kubelet (../bin/kubelet) with a clock speed in /proc/cpuinfo: UML's
# has no "cpu MHz" line, and the kubelet's cadvisor refuses to start
# without one ("could not detect clock speed"). A copy with the line is
# bound over /proc/cpuinfo in a mount namespace of the kubelet's own, so
# crib's namespace and its containers keep the real file. A sysfs cpufreq
# file cannot be faked instead: an overmounted sysfs makes fresh sysfs
# mounts in user namespaces fail (runc's /sys).
kubelet=$(dirname "$(readlink -f "$0")")/../bin/kubelet
exec unshare -m --propagation private sh -c '
	f=$(mktemp /tmp/kubelet-cpuinfo.XXXXXX)
	sed "/^bogomips/i cpu MHz\t\t: 1000.000" /proc/cpuinfo >"$f"
	mount --bind "$f" /proc/cpuinfo
	exec "$0" "$@"' "$kubelet" "$@"
