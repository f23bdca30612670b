#!/bin/sh
# `make run` as root: prepares the host, then starts crib as the dedicated
# unprivileged user USER in the background, because rootless is the point.
#
# usage: run-as-user.sh USER CRIB_BINARY
#        run-as-user.sh --stop USER
set -eu

if [ "${1:-}" = "--stop" ]; then
	user=$2
	uid=$(id -u "$user")
	if [ -d /run/systemd/system ] && systemctl --machine="$user@" --user --quiet is-active crib-run.service 2>/dev/null; then
		systemctl --machine="$user@" --user stop crib-run.service
		echo "stopped crib (crib-run.service of $user)"
		exit 0
	fi
	pidfile=/run/user/$uid/crib-serve.pid
	if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
		echo "stopped crib (pid $(cat "$pidfile"))"
	else
		echo "crib is not running for $user"
	fi
	rm -f "$pidfile"
	exit 0
fi

user=$1
bin=$2
here=$(cd "$(dirname "$0")" && pwd)
"$here/host-setup.sh" "$user"

uid=$(id -u "$user")
gid=$(id -g "$user")
home=$(getent passwd "$user" | cut -d: -f6)
rundir=/run/user/$uid
install -D -m 0755 "$bin" /usr/local/bin/crib
# The host-side parent crib serve executes, found beside crib.
if [ -x "$(dirname "$bin")/crib-hostside" ]; then
	install -D -m 0755 "$(dirname "$bin")/crib-hostside" /usr/local/bin/crib-hostside
fi
install -D -m 0755 "$(dirname "$bin")/crictl" /usr/local/bin/crictl

as_user() {
	setpriv --reuid="$uid" --regid="$gid" --init-groups \
		env -i HOME="$home" USER="$user" LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
		XDG_RUNTIME_DIR="$rundir" "$@"
}

# cgroups, so that pods are confined: a v1 or hybrid host gets a delegated
# subtree crib is pointed at; a pure v2 host with systemd gets controllers
# delegated to user managers and a lingering user, and crib runs as a
# transient service of that user's manager (it then splits its delegated
# cgroup itself, see server/cgroup_placement.go).
cgroup_flags=""
under_systemd=false
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	if [ -d /run/systemd/system ]; then
		"$here/systemd-delegate.sh" "$user"
		under_systemd=true
	else
		echo "pure cgroup v2 without systemd: no delegation to make here; pods run unconfined unless root delegates a cgroup (crib doctor says how)"
	fi
elif [ -d /sys/fs/cgroup/memory ]; then
	"$here/cgroup-delegate.sh" create "$user" >/dev/null
	cgroup_flags="--cgroup-parent=/crib-$user"
	echo "delegated the cgroup v1 subtree crib-$user to $user (scripts/cgroup-delegate.sh)"
fi

# cgroups_line prints what crib doctor, which defers to the running
# daemon, says about cgroups.
cgroups_line() {
	as_user /usr/local/bin/crib doctor $cgroup_flags 2>/dev/null | grep -E '^[a-zA-Z]+ +cgroups' || true
}

pidfile=$rundir/crib-serve.pid
if $under_systemd; then
	if ! systemctl --machine="$user@" --user --quiet is-active crib-run.service 2>/dev/null; then
		# Type=notify: systemd-run returns once crib serves (or failed).
		systemd-run --quiet --machine="$user@" --user --unit=crib-run \
			-p Type=notify -p Delegate=yes -p KillMode=process -p TimeoutStopSec=45s \
			/usr/local/bin/crib serve
	fi
	echo "crib is running as $user (crib-run.service of $user's manager), log: journalctl --user -M $user@ -u crib-run"
	cgroups_line
elif [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
	echo "crib is already running as $user (pid $(cat "$pidfile"))"
else
	as_user /usr/local/bin/crib doctor $cgroup_flags || true
	log=$rundir/crib.log
	# Not through as_user: a function in the background runs in a subshell,
	# and $! must be crib's own pid for `make stop`.
	setpriv --reuid="$uid" --regid="$gid" --init-groups \
		env -i HOME="$home" USER="$user" LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
		XDG_RUNTIME_DIR="$rundir" setsid /usr/local/bin/crib serve $cgroup_flags >"$log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	sock=$rundir/crib/crib.sock
	i=0
	while [ ! -S "$sock" ]; do
		i=$((i + 1))
		if [ $i -gt 100 ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			echo "crib did not start; its log ($log):" >&2
			cat "$log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "crib is running as $user (pid $(cat "$pidfile")), log: $log"
	cgroups_line
fi
cat <<MSG

Talk to it as $user (crictl run by the same user, from the host):
  runuser -u $user -- env XDG_RUNTIME_DIR=$rundir crictl --runtime-endpoint unix://$rundir/crib/crib.sock version
  runuser -u $user -- env XDG_RUNTIME_DIR=$rundir crictl --runtime-endpoint unix://$rundir/crib/crib.sock info
Stop it with: make stop
MSG
