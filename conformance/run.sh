#!/bin/bash
# make conformance: critest v1.37.0 against rootless crib, in two places —
#   host:   critest in the host namespaces, as the same unprivileged user,
#           against the socket (the way a kubelet outside crib would);
#   inside: critest through `crib unshare`, inside crib's namespaces (the
#           way containerd's rootless CI runs it);
# and in each of them the Streaming specs once more over crictl's WebSocket
# transport (modes host-websocket and inside-websocket).
# Each run prints "N passed, M failed, K skipped", the failing specs, writes
# a JUnit file under conformance/.cache/results/, and is checked against
# conformance/baseline.txt (a listed spec that fails fails the target).
#
# Runs as root (CI, a fresh machine): prepares the user, the registry with
# the offline images and a delegated cgroup subtree, then drops to the user.
#
# Environment: MODES="host inside host-websocket inside-websocket" (the
# default), FOCUS=regex (ginkgo
# focus), WRITE_BASELINE=1 (rewrite the baseline from this run),
# TEST_USER (default crib-test), CGROUPS=none (crib unconfined: no
# delegated cgroup subtree, --cgroup-manager none), RUNTIME_HANDLER=NAME
# (every pod critest makes asks for that CRI runtime handler, e.g. runc
# where crun is crib's default; the reports are named MODE-NAME and checked
# against MODE's baseline).
# Every run ends with a census (issue 19): once crib stopped with nothing
# left, no process may be left in its user namespace or one below it; any
# found are listed, killed, and fail the run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=$here/.cache
user=${TEST_USER:-crib-test}
modes=${MODES:-host inside host-websocket inside-websocket}
tags="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
export PATH=/usr/local/go/bin:$PATH GOFLAGS=-buildvcs=false

if [ "$(id -u)" -ne 0 ]; then
	echo "conformance/run.sh runs as root: it prepares $user, the registry and cgroups, then runs crib and critest as $user" >&2
	exit 1
fi

mkdir -p "$cache/results"
chown "${TEST_USER:-crib-test}" "$cache/results"
TEST_STATE=disposable "$repo/scripts/host-setup.sh" "$user"
"$here/images.sh"

# critest is a test binary: built from the module cache, once.
critest=$("$here/build-critest.sh")
(cd "$repo" && go build -tags "$tags" -o "$cache/junitcheck" ./conformance/junitcheck)
(cd "$repo" && make -s build)

uid=$(id -u "$user")
gid=$(id -g "$user")
home=$(getent passwd "$user" | cut -d: -f6)
rundir=/run/user/$uid
root=$home/.local/share/crib-conformance
runroot=$rundir/crib-conformance
sock=$runroot/crib.sock
workdir=$cache/work
install -d -o "$user" -g "$gid" "$workdir"
install -m 0755 "$repo/bin/crib" "$cache/crib"
install -m 0755 "$repo/bin/crib-hostside" "$cache/crib-hostside"
install -m 0644 "$here/registries.conf" "$cache/registries.conf"
install -m 0644 "$here/policy.json" "$cache/policy.json"
chmod 0755 "$cache" "$critest"
chmod o+x "$here" "$repo" 2>/dev/null || true

as_user() {
	setpriv --reuid="$uid" --regid="$gid" --init-groups \
		env -i HOME="$home" USER="$user" LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
		XDG_RUNTIME_DIR="$rundir" "$@"
}

# A delegated cgroup subtree so resource and OOM specs run for real.
cgroup_parent=""
if [ "${CGROUPS:-}" = none ]; then
	echo "CGROUPS=none: crib runs unconfined"
elif [ -x "$repo/scripts/cgroup-delegate.sh" ]; then
	if "$repo/scripts/cgroup-delegate.sh" create "$user" >/dev/null; then
		cgroup_parent=/crib-$user
	fi
fi

crib_pid=""
cleanup() {
	if [ -n "$crib_pid" ]; then
		# A pod critest left behind (a spec that failed half-way) would keep
		# crib's namespaces up after crib stops, and into the next run.
		as_user "$repo/bin/crictl" --runtime-endpoint "unix://$sock" rmp --all --force >/dev/null 2>&1 || true
		kill "$crib_pid" 2>/dev/null || true
		wait "$crib_pid" 2>/dev/null || true
	fi
	if [ -x "$repo/scripts/cgroup-delegate.sh" ]; then
		"$repo/scripts/cgroup-delegate.sh" remove "$user" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

# Hosts here never reap orphans: crib's parent and its daemon are
# subreapers themselves (PR_SET_CHILD_SUBREAPER) and reap what they adopt.
crib_args=(serve --root "$root" --runroot "$runroot"
	--registries-conf "$cache/registries.conf" --signature-policy "$cache/policy.json")
if [ -n "$cgroup_parent" ]; then
	crib_args+=(--cgroup-parent "$cgroup_parent")
fi
[ "${CGROUPS:-}" = none ] && crib_args+=(--cgroup-manager none)
# NRI: critest's NRI specs connect a plugin to crib's NRI socket (inside
# mode). One of them holds a plugin's synchronisation open for 2 s, as long
# as NRI's default request timeout, so the timeout here is longer.
crib_args+=(--nri=true --nri-request-timeout=5s)
# Not through as_user: a function in the background is a subshell, and
# $! must be crib's own pid for the clean-up to stop it.
setpriv --reuid="$uid" --regid="$gid" --init-groups \
	env -i HOME="$home" USER="$user" LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
	XDG_RUNTIME_DIR="$rundir" "$cache/crib" "${crib_args[@]}" >"$cache/results/crib.log" 2>&1 &
crib_pid=$!
if [ -S "$sock" ]; then
	echo "a crib already serves $sock; stop it first" >&2
	exit 1
fi
for _ in $(seq 200); do
	[ -S "$sock" ] && break
	kill -0 "$crib_pid" 2>/dev/null || { cat "$cache/results/crib.log" >&2; exit 1; }
	sleep 0.1
done
# crib's user namespace, for the census at the end.
holder=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$runroot/holder.json" 2>/dev/null)
crib_userns=$(readlink "/proc/${holder:-0}/ns/user" 2>/dev/null || true)

skip_regex() {
	# conformance/skips.txt: MODE<TAB>regex<TAB>reason; MODE "all" applies to both.
	awk -F'\t' -v m="$1" '!/^#/ && NF>=2 && ($1==m || $1=="all") {print $2}' "$here/skips.txt" | paste -sd'|' -
}

handler=${RUNTIME_HANDLER:-}
status=0
for mode in $modes; do
	run=$mode${handler:+-$handler}
	report=$cache/results/junit-$run.xml
	rm -f "$report"
	args=(-runtime-endpoint "unix://$sock" -image-endpoint "unix://$sock"
		-ginkgo.junit-report "$report" -ginkgo.no-color -ginkgo.timeout 20m)
	[ -n "$handler" ] && args+=(-runtime-handler "$handler")
	# MODE-websocket: the Streaming specs again, over crictl's WebSocket
	# transport (remotecommand v5; port-forward tunnelled), where MODE runs.
	base=${mode%-websocket}
	skips=$(skip_regex "$base")
	[ -n "$skips" ] && args+=(-ginkgo.skip "$skips")
	# The NRI specs run inside crib's namespaces, where crib runs plugins.
	[ "$base" = inside ] && args+=(-nri-socket "$runroot/nri.sock")
	focus=${FOCUS:-}
	if [ "$base" != "$mode" ]; then
		args+=(-websocket-exec -websocket-attach -websocket-portforward)
		focus=${FOCUS:-Streaming}
	fi
	[ -n "$focus" ] && args+=(-ginkgo.focus "$focus")
	echo "critest ($run) ..."
	start=$(date +%s)
	case $base in
	host) (cd "$workdir" && as_user "$critest" "${args[@]}") >"$cache/results/critest-$run.log" 2>&1 || true ;;
	inside) (cd "$workdir" && as_user "$cache/crib" unshare --runroot "$runroot" -- "$critest" "${args[@]}") >"$cache/results/critest-$run.log" 2>&1 || true ;;
	*) echo "unknown mode $mode" >&2; exit 2 ;;
	esac
	echo "critest ($run) took $(($(date +%s) - start))s; log: $cache/results/critest-$run.log"
	if [ ! -s "$report" ]; then
		echo "critest ($run) wrote no report; tail of its log:" >&2
		tail -n 30 "$cache/results/critest-$run.log" >&2
		status=1
		continue
	fi
	write=()
	[ "${WRITE_BASELINE:-}" = 1 ] && write=(-write)
	[ -n "${FOCUS:-}" ] && write+=(-partial)
	"$cache/junitcheck" -report "$report" -baseline "$here/baseline.txt" -mode "$mode" "${write[@]}" || status=1
done

# under_userns NS: the live processes whose user namespace is NS ("user:[N]")
# or one below it (a pod with its own user namespace is nested in crib's).
under_userns() {
	local set=" ${1//[^0-9]/} " tree ns pns changed=1 d link
	tree=$(lsns -t user -n -r -o NS,PNS 2>/dev/null || true)
	while [ $changed = 1 ]; do
		changed=0
		while read -r ns pns; do
			[ -n "$ns" ] || continue
			case $set in *" $pns "*) case $set in *" $ns "*) ;; *) set="$set$ns " changed=1 ;; esac ;; esac
		done <<<"$tree"
	done
	for d in /proc/[0-9]*; do
		link=$(readlink "$d/ns/user" 2>/dev/null) || continue
		ns=${link//[^0-9]/}
		case $set in *" $ns "*) ;; *) continue ;; esac
		[ "$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "$d/status" 2>/dev/null)" = Z ] && continue
		echo "${d#/proc/} $(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)"
	done
}

# The census: crib stops as the clean-up stops it; then nothing may be left.
if [ -n "$crib_userns" ]; then
	as_user "$repo/bin/crictl" --runtime-endpoint "unix://$sock" rmp --all --force >/dev/null 2>&1 || true
	kill "$crib_pid" 2>/dev/null || true
	wait "$crib_pid" 2>/dev/null || true
	crib_pid=""
	left=""
	for _ in $(seq 50); do
		left=$(under_userns "$crib_userns")
		[ -z "$left" ] && break
		sleep 0.2
	done
	if [ -n "$left" ]; then
		echo "census: processes left in crib's user namespace $crib_userns after it stopped:" >&2
		echo "$left" >&2
		for pid in $(echo "$left" | cut -d' ' -f1); do kill -9 "$pid" 2>/dev/null || true; done
		status=1
	else
		echo "census: no process left in crib's user namespace $crib_userns"
	fi
else
	echo "census: crib's user namespace unknown (no holder: rootful?); skipped" >&2
fi
exit $status
