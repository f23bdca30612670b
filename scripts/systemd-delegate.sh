#!/bin/sh
# systemd-delegate.sh USER
#
# On a cgroup v2 host with systemd as PID 1 (run as root): delegates the
# cpu, cpuset, io, memory and pids controllers to every user manager (a
# drop-in for user@.service; stock systemd delegates only memory and pids)
# and makes USER linger, so that USER's manager, and crib under it, runs
# without a login session. Idempotent. A user manager that already runs
# gets the new controllers only when it restarts: this script restarts
# USER's when its delegation lacks a controller the drop-in adds.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 USER" >&2; exit 2; }
user=$1
[ "$(id -u)" -eq 0 ] || { echo "$0: must run as root" >&2; exit 1; }
id "$user" >/dev/null 2>&1 || { echo "$0: no such user: $user" >&2; exit 1; }
[ -d /run/systemd/system ] || { echo "$0: systemd is not PID 1 here" >&2; exit 1; }
[ -f /sys/fs/cgroup/cgroup.controllers ] || { echo "$0: not a pure cgroup v2 host (scripts/cgroup-delegate.sh is for v1)" >&2; exit 1; }

uid=$(id -u "$user")
dropin=/etc/systemd/system/user@.service.d/delegate.conf
want='[Service]
Delegate=cpu cpuset io memory pids'
if [ "$(cat "$dropin" 2>/dev/null)" != "$want" ]; then
	mkdir -p "$(dirname "$dropin")"
	printf '%s\n' "$want" >"$dropin"
	systemctl daemon-reload
	echo "wrote $dropin"
fi

loginctl enable-linger "$user"
# Lingering starts the manager; wait for it (a slow machine takes seconds).
i=0
until systemctl is-active --quiet "user@$uid.service"; do
	i=$((i + 1))
	[ $i -le 100 ] || { echo "$0: user@$uid.service did not start" >&2; exit 1; }
	sleep 0.2
done

svc=/sys/fs/cgroup/user.slice/user-$uid.slice/user@$uid.service
for c in cpu memory pids; do
	if ! grep -qw "$c" "$svc/cgroup.controllers" 2>/dev/null; then
		echo "restarting user@$uid.service to delegate $c"
		systemctl restart "user@$uid.service"
		break
	fi
done
echo "$svc: $(cat "$svc/cgroup.controllers")"
