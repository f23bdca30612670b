#!/bin/bash
# run.sh — the cgroup v2 + systemd lane (`make test-v2`): boots the guest
# image (build-image.sh) under User-Mode Linux with systemd as init and
# cgroup v2 only, runs guest/lane.sh in it as described in README.md, and
# fails unless every check passed. Runs as root on the host.
#
# Environment: UML_TIMEOUT (seconds, default 1500), UML_MEM (default 2G),
# CRITEST_FOCUS (ginkgo focus of the critest subset run in the guest).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# Per worktree: .cache is shared, and lanes of two worktrees may run at once.
results=$here/results
timeout=${UML_TIMEOUT:-1500}
# The critest specs the guest runs: cgroups (OOM, stats), security context,
# streaming and the container/pod lifecycle; each takes ≈ 25 s there.
focus=${CRITEST_FOCUS:-'Container OOM|should support listing container stats \[Conformance\]|should support RunAsUser$|should support Privileged is false|should support exec with tty=false and stdin=false|should support attach|should support stopping container \[Conformance\]|should support removing running container|should support running PodSandbox'}
export PATH=/usr/local/go/bin:$PATH GOFLAGS=-buildvcs=false

[ "$(id -u)" -eq 0 ] || { echo "test/uml/run.sh runs as root (it builds the guest image)" >&2; exit 1; }
start=$(date +%s)

# The path is build-image.sh's last line (mke2fs prints to stdout too).
img=$("$here/build-image.sh" | tail -n 1)
echo "guest image: $img ($(($(date +%s) - start))s)"
(cd "$repo" && make -s build crictl)
critest=$("$repo/conformance/build-critest.sh")
"$repo/conformance/images.sh" >/dev/null

# The directory the guest mounts with hostfs; on tmpfs, with the COW file.
stage=$(mktemp -d /dev/shm/crib-uml.XXXXXX)
# hostfs shows the host's modes: the guest's user runs critest from here.
chmod 0755 "$stage"
cow=$stage.cow
uml_pid=""
cleanup() {
	if [ -n "$uml_pid" ] && kill -0 "$uml_pid" 2>/dev/null; then
		kill -KILL -- "-$uml_pid" 2>/dev/null || true
	fi
	rm -rf "$stage" "$cow"
}
trap cleanup EXIT
mkdir -p "$stage/bin" "$stage/guest" "$stage/out" "$stage/registry"
cp "$repo/bin/crib" "$repo/bin/crib-hostside" "$repo/bin/crictl" "$stage/bin/"
cp "$critest" "$stage/bin/critest"
kubelet=${KUBELET_BIN:-$repo/.cache/kubelet-v1.37.2}
if [ -x "$kubelet" ]; then
	cp "$kubelet" "$stage/bin/kubelet"
else
	echo "no kubelet at $kubelet (make kubelet builds it): its check will fail" >&2
fi
cp "$here"/guest/* "$stage/guest/"
# make run's scripts (the lane's last check runs scripts/run-as-user.sh).
mkdir -p "$stage/scripts"
cp "$repo/scripts/run-as-user.sh" "$repo/scripts/systemd-delegate.sh" "$repo/scripts/host-setup.sh" \
	"$repo/scripts/cgroup-delegate.sh" "$stage/scripts/"
cp "$repo/contrib/kubelet/crib-kubelet.sh" "$stage/guest/"
cp "$repo/conformance/registries.conf" "$repo/conformance/policy.json" "$repo/conformance/registry.yml" "$stage/guest/"
cp -a /var/tmp/crib-registry/storage "$stage/registry/"

# The kernel passes crib_lane= and crib_focus= through to /proc/cmdline;
# spaces in the focus travel as '+'.
echo "booting the guest (timeout ${timeout}s) ..."
boot=$(date +%s)
TMPDIR=/dev/shm setsid linux.uml "ubd0=$cow,$img" mem="${UML_MEM:-2G}" root=/dev/ubda rw \
	init=/lib/systemd/systemd systemd.unified_cgroup_hierarchy=1 \
	con=null con0=null,fd:1 "crib_lane=$stage" "crib_focus=${focus// /+}" \
	</dev/null >"$stage/console.log" 2>&1 &
uml_pid=$!
timed_out=0
while kill -0 "$uml_pid" 2>/dev/null; do
	if [ $(($(date +%s) - boot)) -ge "$timeout" ]; then
		timed_out=1
		kill -KILL -- "-$uml_pid" 2>/dev/null || true
		break
	fi
	sleep 2
done
wait "$uml_pid" 2>/dev/null || true

rm -rf "$results"
mkdir -p "$results"
cp -a "$stage/out/." "$stage/console.log" "$results/" 2>/dev/null || true
echo "guest ran $(($(date +%s) - boot))s; lane total $(($(date +%s) - start))s; results in $results"
if [ "$timed_out" = 1 ]; then
	echo "the guest did not finish within ${timeout}s; tail of its console:" >&2
	tail -n 30 "$results/console.log" >&2
	exit 1
fi
if [ ! -s "$results/lane.log" ]; then
	echo "the lane left no log; tail of the guest's console:" >&2
	tail -n 30 "$results/console.log" >&2
	exit 1
fi
grep -E '^(PASS|FAIL) ' "$results/lane.log" || true
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$results/lane.log" | tail -n 1)
echo "${summary:-no summary line}"
[[ $summary =~ ^[0-9]+\ passed,\ 0\ failed$ ]]
