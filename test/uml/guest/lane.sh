#!/bin/bash
# lane.sh — the v2 lane inside the UML guest (systemd PID 1, cgroup v2 only),
# started as root by crib-lane-boot with the hostfs directory as $1:
#   $1/bin        crib, crictl, critest, kubelet
#   $1/registry   the host registry's storage, served on 127.0.0.1:5000
#   $1/guest      this script, checks.sh and the CRI JSON files
#   $1/scripts    make run's scripts (run-as-user.sh and what it calls)
#   $1/out        results (lane.log is this script's output)
# Sets the guest up as a user would, then runs checks.sh's checks in order.
set -u
H=$1
G=$H/guest
OUT=$H/out
CRITEST_FOCUS=${CRITEST_FOCUS:-$(tr ' ' '\n' </proc/cmdline | sed -n 's/^crib_focus=//p' | tr '+' ' ')}
. "$G/checks.sh"
lane_start=$(date +%s)

note "guest: $(uname -r), $(nproc) cpu, cgroup $(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"

# No udev in the guest: the modules and device nodes rootless crib needs.
for m in overlay fuse tun veth bridge br_netfilter iptable_nat iptable_filter xt_MASQUERADE xt_conntrack xt_comment nf_conntrack; do
	modprobe "$m" 2>/dev/null
done
[ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229
mkdir -p /dev/net
[ -e /dev/net/tun ] || mknod -m 0666 /dev/net/tun c 10 200
chmod 0666 /dev/fuse /dev/net/tun

# The offline test images: the host registry's storage, read from hostfs.
note "registry"
systemd-run --unit=lane-registry --setenv=REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$H/registry/storage" \
	/usr/bin/docker-registry serve "$G/registry.yml" >/dev/null
wait_for 60 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000' || echo "registry did not start"

# The user manager of the lingering user.
wait_for 120 systemctl is-active user@$tuid.service || { fail "user manager" "user@$tuid.service not active"; summary; exit 1; }
note "user@$tuid.service delegates: $(cat /sys/fs/cgroup/user.slice/user-$tuid.slice/user@$tuid.service/cgroup.controllers)"

# make install, as the user would: the binary in ~/.local/bin, then
# crib install-service, the configuration and crictl's endpoint file.
u mkdir -p $thome/.local/bin $thome/.config/crib $thome/lane-logs
install -o tester -g tester -m 0755 "$H/bin/crib" $thome/.local/bin/crib
install -o tester -g tester -m 0755 "$H/bin/crib-hostside" $thome/.local/bin/crib-hostside
install -m 0755 "$H/bin/crictl" /usr/local/bin/crictl
install -o tester -g tester -m 0644 "$G/registries.conf" "$G/policy.json" $thome/.config/crib/
cat >$thome/.config/crib/crib.toml <<TOML
[image]
registries_conf = "$thome/.config/crib/registries.conf"
policy_path = "$thome/.config/crib/policy.json"
TOML
chown tester:tester $thome/.config/crib/crib.toml
u crib install-service
u systemctl --user daemon-reload
note "starting crib"
u systemctl --user enable --now crib.socket crib.service
u crib crictl-config --write >/dev/null
wait_for 120 c info || echo "crib does not answer"
u systemctl --user status --no-pager crib.service | head -n 12

check_service_active
check_doctor
note "pull"
c pull docker.io/library/busybox:latest >/dev/null || fail "pull busybox" "$(tail -n 3 "$OUT/crictl.stderr")"
note "limits"
if start_limits_pod; then
	check_limits
	note "update"
	check_update
	note "stats"
	check_stats
	note "oom"
	check_oom
	note "restart"
	check_restart
fi
note "critest"
check_critest
note "kubelet"
check_kubelet
note "stop and removal"
check_cleanup
u journalctl --user -u crib.service --no-pager >"$OUT/crib.journal" 2>&1
note "make run as root"
check_make_run
note "lane took $(($(date +%s) - lane_start))s"
summary
[ "$failed" -eq 0 ]
