#!/bin/bash
# make bench: rootless crib against rootful containerd 1.6 (Debian), over
# CRI, in one run, interleaved, with runc alone as the floor. Runs as root.
#
#   - the local registry and the offline images (conformance/images.sh);
#   - crib as $TEST_USER (default crib-test) with its own root and runroot
#     and a delegated cgroup subtree (scripts/cgroup-delegate.sh);
#   - containerd in a network namespace of its own ("cribbench": its CNI
#     bridge cni-bench, 10.77.0.0/16, and its NAT rules never touch the
#     host's) and a private mount namespace (its overlay, shm and netns
#     mounts, /run/containerd and /var/lib/cni stay in there), under a
#     subreaper (catatonit) that reaps its shims; its registry mirror is a
#     second docker-registry inside that network namespace on the same
#     storage, at the same 127.0.0.1:5000;
#   - bench/cribbench measures, writes bench/results/<time>/{results.md,
#     results.json,chart.svg} and prints the table.
# Everything started here is stopped by pid, and every directory, cgroup
# and namespace made here is removed, also on failure.
#
# Environment: TEST_USER, ITERATIONS (20), PODS (100), CHURN_WINDOW (8s),
# SMALL_PULLS (10), BIG_PULLS (5), CRIB_LOG_LEVEL (info; debug also writes
# steps.md, the median time of each step of each call), CRIB_BIN (a crib
# binary to measure instead of building this checkout's).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
user=${TEST_USER:-crib-test}
tags="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GOFLAGS=-buildvcs=false

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/run.sh runs as root: it starts containerd rootful and crib as $user" >&2
	exit 1
fi
# One bench at a time: the network namespace, the scratch directories and
# the registry address below are fixed, and two runs would also skew each
# other's figures.
exec 9>/run/crib-bench.lock
if ! flock -n 9; then
	echo "bench/run.sh: another make bench is running; waiting for it" >&2
	flock 9
fi
for prog in containerd containerd-shim-runc-v2 runc catatonit nsenter unshare ip docker-registry; do
	command -v "$prog" >/dev/null || { echo "bench/run.sh: $prog is missing (apt-get install containerd runc catatonit iproute2 docker-registry)" >&2; exit 1; }
done

work=/var/tmp/crib-bench                  # crib side: binaries, logs, floor bundle
cdir=/var/tmp/crib-bench-containerd      # containerd side: root, state, config, CNI
netns=cribbench
results=$here/results/$(date -u +%Y%m%dT%H%M%SZ)
started=$(date +%s)

"$repo/scripts/host-setup.sh" "$user" >/dev/null
# Not with the lock's descriptor: a registry images.sh starts outlives the
# run, and holding the lock it would keep every later run waiting.
"$repo/conformance/images.sh" >/dev/null 9>&-
install -d -m 0755 "$work"
(cd "$repo" && go build -tags "$tags" -o "$work/cribbench" ./bench)
if [ -n "${CRIB_BIN:-}" ]; then
	install -m 0755 "$CRIB_BIN" "$work/crib"
else
	(cd "$repo" && make -s build)
	install -m 0755 "$repo/bin/crib" "$work/crib"
fi
# crib serve executes the small host-side parent found beside crib (an
# older crib, or one without it, keeps the parent in its own binary).
rm -f "$work/crib-hostside"
hostside=$(dirname "${CRIB_BIN:-$repo/bin/crib}")/crib-hostside
[ -x "$hostside" ] && install -m 0755 "$hostside" "$work/crib-hostside"
# The floor helpers enter crib's namespaces through `crib unshare`, whose
# guest stays for the whole run. Run from a copy of its own, it maps no page
# of the daemon's binary file: a shared page would be divided between them
# in PSS, and crib's idle figures would come out smaller than crib's cost.
install -m 0755 "$work/crib" "$work/crib-guest"
install -m 0644 "$repo/conformance/registries.conf" "$work/registries.conf"
install -m 0644 "$repo/conformance/policy.json" "$work/policy.json"

uid=$(id -u "$user")
gid=$(id -g "$user")
home=$(getent passwd "$user" | cut -d: -f6)
rundir=/run/user/$uid
crib_root=$home/.local/share/crib-bench
crib_runroot=$rundir/crib-bench
crib_sock=$crib_runroot/crib.sock
ctrd_sock=$cdir/containerd.sock

crib_pid="" ctrd_pid="" reg_pid="" made_dirs=() delegated=""
stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 20s; reaps it
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		[ "$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	set +e
	if [ -x "$work/cribbench" ]; then
		eps=()
		[ -S "$crib_sock" ] && eps+=("unix://$crib_sock")
		[ -S "$ctrd_sock" ] && eps+=("unix://$ctrd_sock")
		((${#eps[@]})) && timeout 300 "$work/cribbench" clean "${eps[@]}" >/dev/null 2>&1
	fi
	stop_pid "$crib_pid"
	if [ -n "$ctrd_pid" ]; then
		local mntns
		mntns=$(readlink "/proc/$ctrd_pid/ns/mnt" 2>/dev/null)
		stop_pid "$ctrd_pid"
		# Anything still in containerd's mount namespace (a shim of an
		# interrupted run) is ours: stop it by pid.
		if [ -n "$mntns" ]; then
			for p in /proc/[0-9]*; do
				[ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$mntns" ] && kill -9 "${p#/proc/}" 2>/dev/null
			done
		fi
	fi
	stop_pid "$reg_pid"
	ip netns del "$netns" 2>/dev/null
	rm -rf "$cdir"
	for d in /sys/fs/cgroup/*/cribbench-containerd; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	[ -n "$delegated" ] && "$repo/scripts/cgroup-delegate.sh" remove "$user" >/dev/null 2>&1
	rm -rf "$rundir/crib-bench-floor" "$work/floor" "$work/logs-crib" "$work/logs-containerd"
	for d in "${made_dirs[@]}"; do rmdir "$d" 2>/dev/null; done
}
trap cleanup EXIT

# ------------------------------------------------------------- crib ---
if [ -S "$crib_sock" ]; then
	echo "bench/run.sh: a crib already serves $crib_sock; stop it first" >&2
	exit 1
fi
# A fresh root, as containerd gets below: nothing (images, a CNI conflist
# written by an older crib) carries over from an earlier run.
rm -rf "$crib_root"
delegation=$("$repo/scripts/cgroup-delegate.sh" create "$user")
delegated=yes
cgroup_procs=$(printf '%s/cgroup.procs\n' $delegation | paste -sd, -)
setpriv --reuid="$uid" --regid="$gid" --init-groups \
	env -i HOME="$home" USER="$user" LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
	XDG_RUNTIME_DIR="$rundir" "$work/crib" serve --root "$crib_root" --runroot "$crib_runroot" \
	--registries-conf "$work/registries.conf" --signature-policy "$work/policy.json" \
	--cgroup-parent "/crib-$user" --log-level "${CRIB_LOG_LEVEL:-info}" >"$work/crib.log" 2>&1 &
crib_pid=$!

# ------------------------------------------------------- containerd ---
rm -rf "$cdir"
mkdir -p "$cdir/root" "$cdir/state" "$cdir/cni" "$cdir/logs"
cat >"$cdir/config.toml" <<EOF
version = 2
root = "$cdir/root"
state = "$cdir/state"
[grpc]
  address = "$ctrd_sock"
[ttrpc]
  address = "$ctrd_sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cdir/cni"
EOF
for host in docker.io registry.k8s.io gcr.io k8s.gcr.io quay.io public.ecr.aws; do
	cat >>"$cdir/config.toml" <<EOF
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$host"]
    endpoint = ["http://127.0.0.1:5000/v2/$host"]
EOF
done
cat >"$cdir/cni/10-cni-bench.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "cni-bench",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni-bench",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$cdir/cni-ipam",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "ranges": [[{ "subnet": "10.77.0.0/16" }]]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
ip netns add "$netns"
ip -n "$netns" link set lo up
REGISTRY_HTTP_ADDR=127.0.0.1:5000 REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/var/tmp/crib-registry/storage \
	nsenter --net=/run/netns/$netns docker-registry serve "$repo/conformance/registry.yml" >"$cdir/registry.log" 2>&1 &
reg_pid=$!
for d in /run/containerd /var/lib/cni; do
	[ -d "$d" ] || { mkdir -p "$d"; made_dirs+=("$d"); }
done
# nsenter, unshare and sh exec in turn: $! ends up as catatonit's pid.
nsenter --net=/run/netns/$netns unshare --mount --propagation private /bin/sh -c '
	mount -t tmpfs -o mode=0711 tmpfs /run/containerd &&
	mount -t tmpfs tmpfs /var/lib/cni &&
	mount -t tmpfs tmpfs /run/netns &&
	exec catatonit -- containerd --config "$1"' sh "$cdir/config.toml" >"$cdir/containerd.log" 2>&1 &
ctrd_pid=$!

wait_for_socket() { # wait_for_socket NAME SOCKET PID LOG
	local i
	for ((i = 0; i < 300; i++)); do
		[ -S "$2" ] && return 0
		kill -0 "$3" 2>/dev/null || { echo "bench/run.sh: $1 exited; its log:" >&2; tail -n 30 "$4" >&2; return 1; }
		sleep 0.1
	done
	echo "bench/run.sh: $1 does not serve $2 after 30s; its log:" >&2
	tail -n 30 "$4" >&2
	return 1
}
wait_for_socket crib "$crib_sock" "$crib_pid" "$work/crib.log"
wait_for_socket containerd "$ctrd_sock" "$ctrd_pid" "$cdir/containerd.log"
sleep 1 # both answer Version before the first figure; cribbench retries nothing

mkdir -p "$results"
"$work/cribbench" run \
	-crib-endpoint "unix://$crib_sock" -crib-runroot "$crib_runroot" -crib-bin "$work/crib-guest" \
	-crib-user "$user" -crib-pid "$crib_pid" \
	-containerd-endpoint "unix://$ctrd_sock" -containerd-reaper-pid "$ctrd_pid" \
	-work "$work" -out "$results" -cgroup-procs "$cgroup_procs" \
	-iterations "${ITERATIONS:-20}" -pods "${PODS:-100}" -churn-window "${CHURN_WINDOW:-8s}" \
	-small-pulls "${SMALL_PULLS:-10}" -big-pulls "${BIG_PULLS:-5}"
cp "$work/crib.log" "$cdir/containerd.log" "$results/" 2>/dev/null || true
# At debug level each call's log line carries its steps' durations: where
# the time went, per call, as medians.
if [ "${CRIB_LOG_LEVEL:-info}" = debug ]; then
	"$work/cribbench" steps "$work/crib.log" RunPodSandbox CreateContainer StartContainer StopContainer \
		RemoveContainer StopPodSandbox RemovePodSandbox PullImage >"$results/steps.md" && cat "$results/steps.md"
fi
echo
echo "results: $results (make bench took $(($(date +%s) - started))s)"
