#!/bin/sh
# cgroup-delegate.sh create|remove USER
#
# Delegates a cgroup v1 subtree to USER on a v1 or hybrid host without a
# user systemd (run as root, e.g. in CI set-up): makes crib-USER under the
# root of every v1 hierarchy (cpu, cpuacct, pids, cpuset, devices, freezer,
# blkio, name=systemd ...), and under the memory cgroup this
# shell sits in (the machine's own processes live in a memory cgroup that
# must not be moved or limited), then chowns each to USER and prints the
# paths. crib finds them through `cgroup.parent = "/crib-USER"` or when it
# is started from inside them. `remove` deletes only what `create` made,
# and only when no process is left inside.
set -eu

usage() { echo "usage: $0 create|remove USER" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1 user=$2
[ "$(id -u)" -eq 0 ] || { echo "$0: must run as root" >&2; exit 1; }
id "$user" >/dev/null 2>&1 || { echo "$0: no such user: $user" >&2; exit 1; }

root=/sys/fs/cgroup
name=crib-$user
own_memory=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
[ -d "$root/memory" ] || { echo "$0: no cgroup v1 memory hierarchy under $root (pure cgroup v2? use systemd delegation)" >&2; exit 1; }

# dir_of CONTROLLER: where crib-USER lives in that hierarchy.
dir_of() {
	if [ "$1" = memory ]; then
		echo "$root/memory${own_memory%/}/$name"
	else
		echo "$root/$1/$name"
	fi
}

# Every cgroup v1 hierarchy, not only the ones crib limits: runc joins each
# mounted hierarchy (named ones such as name=systemd too) at the path it is
# given, and fails when it may not create that path in one of them.
controllers=""
for d in $(awk '$9 == "cgroup" { print $5 }' /proc/self/mountinfo); do
	case $d in "$root"/*) ;; *) continue ;; esac
	c=${d#"$root"/}
	case $c in */*) continue ;; esac
	controllers="$controllers $c"
done

case $action in
create)
	for c in $controllers; do
		d=$(dir_of "$c")
		mkdir -p "$d"
		if [ "$c" = cpuset ]; then
			# A new cpuset is empty and refuses tasks until it gets cpus and mems.
			cat "$(dirname "$d")/cpuset.cpus" >"$d/cpuset.cpus"
			cat "$(dirname "$d")/cpuset.mems" >"$d/cpuset.mems"
		fi
		chown -R "$user" "$d"
		echo "$d"
	done
	;;
remove)
	for c in $controllers; do
		d=$(dir_of "$c")
		[ -d "$d" ] || continue
		# Leaves first; rmdir refuses a cgroup that still has processes.
		find "$d" -depth -type d -exec rmdir {} \;
		echo "removed $d"
	done
	;;
*) usage ;;
esac
