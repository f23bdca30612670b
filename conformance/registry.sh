#!/bin/bash
# registry.sh start|stop|status — the local, offline test registry.
#
# Runs Debian's docker-registry (the distribution registry) on 127.0.0.1:5000
# with the configuration in conformance/registry.yml and its storage under
# $CRIB_REGISTRY_DIR (default /var/tmp/crib-registry). The pid file, the log
# and the blobs all live in that directory. `start` is idempotent; `stop` kills
# only the pid recorded in the pid file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${CRIB_REGISTRY_DIR:-/var/tmp/crib-registry}
pidfile=$dir/registry.pid
logfile=$dir/registry.log
addr=127.0.0.1:5000
bin=/usr/bin/docker-registry

# alive PID: true if PID runs docker-registry and is not a zombie. PID 1 on
# the test hosts never reaps orphans, so a killed registry may linger as a
# zombie: kill -0 alone would call it alive.
alive() {
	local pid=$1 state
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/stat ]] || return 1
	state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ $state != Z && $state != X ]] || return 1
	[[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$bin" ]]
}

recorded_pid() { [[ -r $pidfile ]] && tr -dc '0-9' <"$pidfile" || true; }

answers() { curl -fs -o /dev/null --max-time 2 "http://$addr/v2/"; }

wait_until_answering() {
	local pid=$1 i
	for ((i = 0; i < 100; i++)); do
		answers && return 0
		alive "$pid" || { echo "registry.sh: docker-registry (pid $pid) exited; see $logfile" >&2; tail -n 20 "$logfile" >&2 || true; return 1; }
		sleep 0.1
	done
	echo "registry.sh: docker-registry (pid $pid) does not answer on http://$addr/v2/ after 10s; see $logfile" >&2
	return 1
}

start() {
	local pid
	pid=$(recorded_pid)
	if alive "$pid"; then
		wait_until_answering "$pid"
		echo "registry running: pid $pid, http://$addr, storage $dir/storage"
		return 0
	fi
	if answers; then
		echo "registry.sh: something else already answers on $addr (not pid file $pidfile)" >&2
		return 1
	fi
	[[ -x $bin ]] || { echo "registry.sh: $bin missing (apt-get install docker-registry)" >&2; return 1; }
	mkdir -p "$dir/storage"
	# setsid: the registry must not die with the caller's terminal or session.
	REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$dir/storage \
		setsid "$bin" serve "$here/registry.yml" </dev/null >>"$logfile" 2>&1 &
	pid=$!
	echo "$pid" >"$pidfile"
	wait_until_answering "$pid"
	echo "registry started: pid $pid, http://$addr, storage $dir/storage"
}

stop() {
	local pid i
	pid=$(recorded_pid)
	if ! alive "$pid"; then
		rm -f "$pidfile"
		echo "registry not running"
		return 0
	fi
	kill -TERM "$pid"
	for ((i = 0; i < 100; i++)); do
		alive "$pid" || break
		sleep 0.1
	done
	alive "$pid" && kill -KILL "$pid"
	rm -f "$pidfile"
	echo "registry stopped: pid $pid"
}

status() {
	local pid
	pid=$(recorded_pid)
	if alive "$pid" && answers; then
		echo "registry running: pid $pid, http://$addr, storage $dir/storage"
		return 0
	fi
	echo "registry not running"
	return 3
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
