# checks.sh — the checks of the UML v2 lane, sourced by lane.sh (bash, as
# root in the guest). Each check prints one "PASS name: detail" or
# "FAIL name: detail" line; summary prints "N passed, M failed".
# Commands of the test user go through `u`; crictl reads the endpoint from
# the crictl.yaml `crib crictl-config --write` made (no warnings on stderr to
# pollute the values read back).

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1: $2"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
# expect NAME GOT WANT
expect() { if [ "$2" = "$3" ]; then pass "$1" "$2"; else fail "$1" "got '$2', want '$3'"; fi; }
summary() { echo "$passed passed, $failed failed"; }
note() { echo "---- $(date +%T) $*"; }

tuid=1000
thome=/home/tester
uenv=(env -i HOME=$thome USER=tester LOGNAME=tester
	PATH=$thome/.local/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
	XDG_RUNTIME_DIR=/run/user/$tuid DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$tuid/bus
	CRI_CONFIG_FILE=$thome/.config/crib/crictl.yaml)
u() {
	runuser -u tester -- "${uenv[@]}" "$@"
}
# us: as the user, in a scope of the user's manager, where a login shell's
# commands run (not in the lane's root-owned system cgroup).
us() { u systemd-run --user --scope --quiet -- "$@"; }
# crictl as the user; its stderr goes to the log, never into a value.
c() { u crictl "$@" 2>>"$OUT/crictl.stderr"; }
# tmpl ID TEMPLATE: crictl inspect through a go-template.
tmpl() { c inspect -o go-template --template "$2" "$1"; }
# jnum KEY: the first "value" following "KEY" in crictl's JSON on stdin
# (stats have no go-template output; protojson prints uint64 as strings).
jnum() { awk -v k="\"$1\"" 'index($0, k) {f = 1} f && /"value"/ {gsub(/[^0-9]/, ""); print; exit}'; }
# hostpid PID: crib reports a container's PID as seen in crib's own PID
# namespace (the node's); the guest's PID is the one whose NSpid line has
# it second. A PID no process has there is taken as the guest's own.
hostpid() {
	local h
	h=$(awk -v p="$1" '$1 == "NSpid:" && NF >= 3 && $3 == p {split(FILENAME, a, "/"); print a[3]; exit}' /proc/[0-9]*/status 2>/dev/null)
	echo "${h:-$1}"
}
# cgdir PID: the cgroup v2 directory of a container's process (PID as crib
# reports it).
cgdir() { echo "/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$(hostpid "$1")/cgroup")"; }
# wait_for SECONDS COMMAND...: poll until the command succeeds.
wait_for() {
	local end=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 1
	done
}

check_service_active() {
	expect "crib.service active" "$(u systemctl --user is-active crib.service)" active
	# crib is confined only when its cgroup is under the user's delegated manager.
	local pid
	pid=$(u systemctl --user show -p MainPID --value crib.service)
	echo "crib MainPID $pid cgroup $(sed -n 's/^0:://p' "/proc/$pid/cgroup" 2>/dev/null)"
}

check_doctor() {
	local out bad
	out=$(us crib doctor 2>&1)
	echo "$out" | sed 's/^/    doctor: /'
	bad=$(echo "$out" | grep -E '^(warn|fail)' | cut -c1-200 | paste -sd';' -)
	if [ -z "$bad" ]; then pass "crib doctor all ok" "no warn or fail line"; else fail "crib doctor all ok" "$bad"; fi
}

# Creates the pod and its limits container; sets POD and CTR.
start_limits_pod() {
	POD=$(c runp "$G/pod.json") || { fail "run pod" "crictl runp failed: $(tail -n 3 "$OUT/crictl.stderr")"; return 1; }
	CTR=$(c create "$POD" "$G/ctr-limits.json" "$G/pod.json") || { fail "create limits container" "$(tail -n 3 "$OUT/crictl.stderr")"; return 1; }
	c start "$CTR" >/dev/null || { fail "start limits container" "$(tail -n 3 "$OUT/crictl.stderr")"; return 1; }
	pass "pod and limits container running" "pod $POD container $CTR"
}

check_limits() {
	local pid dir
	pid=$(tmpl "$CTR" '{{.info.pid}}')
	dir=$(cgdir "$pid")
	echo "container pid $pid (guest pid $(hostpid "$pid")) cgroup $dir"
	case $dir in
	/sys/fs/cgroup/user.slice/user-$tuid.slice/user@$tuid.service/*) pass "container cgroup delegated" "${dir#/sys/fs/cgroup}" ;;
	*) fail "container cgroup delegated" "${dir#/sys/fs/cgroup} is outside user@$tuid.service" ;;
	esac
	expect "memory.max" "$(cat "$dir/memory.max" 2>&1)" 67108864
	expect "cpu.max" "$(cat "$dir/cpu.max" 2>&1)" "50000 100000"
	# CRI has no per-container pids limit: the pids controller must be
	# enabled (pids.max present, pids.current counting the container).
	if [ -r "$dir/pids.max" ] && [ "$(cat "$dir/pids.current")" -ge 1 ]; then
		pass "pids controller" "pids.max $(cat "$dir/pids.max"), pids.current $(cat "$dir/pids.current")"
	else
		fail "pids controller" "no pids.max/pids.current in $dir"
	fi
	# A private cgroup namespace: the container sees its own limits at /.
	expect "memory.max seen inside the container" "$(c exec "$CTR" cat /sys/fs/cgroup/memory.max 2>&1)" 67108864
}

check_update() {
	local dir
	dir=$(cgdir "$(tmpl "$CTR" '{{.info.pid}}')")
	if ! c update --memory 100663296 --cpu-quota 20000 --cpu-period 100000 "$CTR" >/dev/null; then
		fail "UpdateContainerResources" "crictl update failed: $(tail -n 3 "$OUT/crictl.stderr")"
		return
	fi
	expect "memory.max after update" "$(cat "$dir/memory.max" 2>&1)" 100663296
	expect "cpu.max after update" "$(cat "$dir/cpu.max" 2>&1)" "20000 100000"
}

# wset DIR: a v2 cgroup's working set, memory.current less inactive_file
# (empty when the files are not there).
wset() {
	awk 'FNR == NR {cur = $1; next} $1 == "inactive_file" {print cur - $2}' "$1/memory.current" "$1/memory.stat" 2>/dev/null
}

check_stats() {
	local dir pdir ws cpu want pws
	dir=$(cgdir "$(tmpl "$CTR" '{{.info.pid}}')")
	c stats -o json --id "$CTR" >"$OUT/stats.json"
	ws=$(jnum workingSetBytes <"$OUT/stats.json")
	cpu=$(jnum usageCoreNanoSeconds <"$OUT/stats.json")
	# The working set of a v2 cgroup is memory.current less inactive_file;
	# the container only sleeps, so both reads agree within a few pages.
	want=$(wset "$dir")
	if [ -n "$ws" ] && [ -n "$want" ] && [ -n "$cpu" ] && [ "$cpu" -gt 0 ] && [ $((ws - want)) -le 65536 ] && [ $((want - ws)) -le 65536 ]; then
		pass "ContainerStats from v2 files" "workingSet $ws (cgroup: $want), cpu $cpu ns"
	else
		fail "ContainerStats from v2 files" "workingSet '$ws' (cgroup: memory.current - inactive_file = $want), cpu '$cpu'"
	fi
	# The pod's cgroup is the container's parent; it holds this container
	# only (the OOM one comes later).
	pdir=${dir%/*}
	c statsp -o json --id "$POD" >"$OUT/statsp.json"
	pws=$(jnum workingSetBytes <"$OUT/statsp.json")
	want=$(wset "$pdir")
	if [ -n "$pws" ] && [ -n "$want" ] && [ $((pws - want)) -le 65536 ] && [ $((want - pws)) -le 65536 ]; then
		pass "PodSandboxStats from v2 files" "pod workingSet $pws (cgroup ${pdir##*/}: $want)"
	else
		fail "PodSandboxStats from v2 files" "pod workingSet '$pws' (cgroup ${pdir#/sys/fs/cgroup/}: $want)"
	fi
}

check_oom() {
	local oom state
	oom=$(c create "$POD" "$G/ctr-oom.json" "$G/pod.json") && c start "$oom" >/dev/null || {
		fail "OOM container" "$(tail -n 3 "$OUT/crictl.stderr")"
		return
	}
	wait_for 120 test "$(tmpl "$oom" '{{.status.state}}')" = CONTAINER_EXITED
	state=$(tmpl "$oom" '{{.status.exitCode}} {{.status.reason}}')
	expect "OOM kill: exit code and reason" "$state" "137 OOMKilled"
	c rm "$oom" >/dev/null
}

check_restart() {
	local before after dir
	before=$(tmpl "$CTR" '{{.info.pid}}')
	u systemctl --user restart crib.service
	wait_for 120 c info
	expect "crib.service active after restart" "$(u systemctl --user is-active crib.service)" active
	after=$(tmpl "$CTR" '{{.status.state}} {{.info.pid}}')
	expect "container survives restart" "$after" "CONTAINER_RUNNING $before"
	dir=$(cgdir "$before")
	expect "memory.max after restart" "$(cat "$dir/memory.max" 2>&1)" 100663296
	expect "exec after restart" "$(c exec "$CTR" echo alive 2>&1)" alive
}

# Runroot entries named after a container or pod (a 64-hex ID) are debris
# of removed objects; the daemon's own files (lock, sockets, storage state,
# empty directories) are listed in the detail, kept for the next start.
debris_re='[0-9a-f]{64}'

# leftover_cgroups: crib's or pods' cgroups below the user manager, except
# an empty crib.service (systemd's own, gone once the unit is collected).
leftover_cgroups() {
	local d
	find /sys/fs/cgroup/user.slice/user-$tuid.slice/user@$tuid.service -mindepth 1 -type d \( -name '*crib*' -o -name '*pod*' \) 2>/dev/null |
		while read -r d; do
			if [ "${d##*/}" = crib.service ] && [ -z "$(cat "$d/cgroup.procs")" ] && [ -z "$(find "$d" -mindepth 1 -type d)" ]; then
				continue
			fi
			echo "${d#/sys/fs/cgroup/}($(wc -l <"$d/cgroup.procs") procs)"
		done | paste -sd';' -
}

check_cleanup() {
	local left mounts cgs rr extra
	c rmp --all --force >/dev/null
	u systemctl --user stop crib.socket crib.service
	sleep 2
	left=$(ps -u tester -o pid=,comm= | grep -vE ' (systemd|\(sd-pam\)|dbus-daemon)$' | paste -sd';' -)
	if [ -z "$left" ]; then pass "no process left" "only the user manager"; else fail "no process left" "$left"; fi
	mounts=$(grep -E 'crib|/run/user/'$tuid'/' /proc/self/mountinfo | grep -vE ' (/run/user/'$tuid'|/mnt/host) ' | cut -d' ' -f5 | paste -sd';' -)
	if [ -z "$mounts" ]; then pass "no mount left" "none under crib or the runtime dir"; else fail "no mount left" "$mounts"; fi
	cgs=$(leftover_cgroups)
	if [ -z "$cgs" ]; then pass "no cgroup left" "nothing below user@$tuid.service but crib.service's empty one"; else fail "no cgroup left" "$cgs"; fi
	rr=$(cd /run/user/$tuid/crib 2>/dev/null && find . -mindepth 1 | sed 's|^\./||' | sort)
	echo "runroot after stop: $(echo "$rr" | paste -sd' ' -)"
	extra=$(echo "$rr" | grep -E "$debris_re" | paste -sd';' -)
	if [ -z "$extra" ]; then
		pass "no runroot entry of a removed pod or container" "kept: $(echo "$rr" | grep -v '^storage/' | paste -sd' ' -)"
	else
		fail "no runroot entry of a removed pod or container" "$(echo "$rr" | grep -cE "$debris_re") left: $extra"
	fi
}

# critest inside crib's namespaces, a focused subset (see README.md).
check_critest() {
	local sock log report
	[ -x "$H/bin/critest" ] || { fail "critest" "no critest binary given"; return; }
	sock=/run/user/$tuid/crib/crib.sock
	log=$OUT/critest.log
	report=$thome/critest-junit.xml
	(cd $thome && us crib unshare -- "$H/bin/critest" -runtime-endpoint "unix://$sock" -image-endpoint "unix://$sock" \
		-ginkgo.no-color -ginkgo.timeout 15m -ginkgo.junit-report "$report" \
		-ginkgo.focus "$CRITEST_FOCUS") >"$log" 2>&1
	cp "$report" "$OUT/critest-junit.xml" 2>/dev/null
	grep -E '^(Ran|FAIL!|SUCCESS!)' "$log"
	if grep -q '^SUCCESS!' "$log"; then
		pass "critest inside crib's namespaces" "$(grep -E '^Ran ' "$log")"
	else
		fail "critest inside crib's namespaces" "$(grep -E '^(Ran|FAIL!)' "$log" | paste -sd' ' -); $(grep -E '^\s*\[FAIL\]' "$log" | head -5 | paste -sd';' -)"
	fi
}

# The kubelet (contrib/kubelet/crib-kubelet.sh --standalone, inside crib's
# namespaces) runs static-pod.yaml; its container must get the limits.
static_running() { [ -n "$(c ps --name '^limited$' --state running -q)" ]; }
# static_or_exited PID: done waiting once the container runs or the kubelet
# has exited.
static_or_exited() { static_running || ! kill -0 "$1" 2>/dev/null; }
check_kubelet() {
	local kpid id dir
	[ -x "$H/bin/kubelet" ] || { fail "kubelet static pod" "no kubelet binary given"; return; }
	u mkdir -p $thome/.config/crib/manifests
	setsid runuser -u tester -- "${uenv[@]}" KUBELET="$G/kubelet-uml.sh" \
		systemd-run --user --scope --quiet -- bash "$G/crib-kubelet.sh" --standalone -- --hostname-override=crib-uml >"$OUT/kubelet.log" 2>&1 &
	kpid=$!
	install -o tester -m 0644 "$G/static-pod.yaml" $thome/.config/crib/manifests/lane-static.yaml
	if ! wait_for 300 static_or_exited "$kpid" || ! static_running; then
		fail "kubelet static pod" "not running; $(grep -E '^E[0-9]' "$OUT/kubelet.log" | tail -n 3 | cut -c1-300 | paste -sd';' -)"
	else
		id=$(c ps --name '^limited$' --state running -q | head -n 1)
		dir=$(cgdir "$(tmpl "$id" '{{.info.pid}}')")
		expect "kubelet static pod limits (memory.max, cpu.max)" "$(cat "$dir/memory.max") $(cat "$dir/cpu.max")" "67108864 50000 100000"
	fi
	rm -f $thome/.config/crib/manifests/lane-static.yaml
	kill -TERM -- "-$kpid" 2>/dev/null
	wait_for 30 bash -c "! kill -0 $kpid" || kill -KILL -- "-$kpid" 2>/dev/null
	wait "$kpid" 2>/dev/null
}

# make run as root (scripts/run-as-user.sh) for a fresh user: the Delegate
# drop-in and linger (scripts/systemd-delegate.sh), crib as the transient
# crib-run.service of the user's manager; its pods must be confined there.
# The guest is offline: its packages come with the image
# (HOST_SETUP_PACKAGES=no), the user gets the test registry's config.
ruser=crib-run
# r: a command as $ruser, as run-as-user.sh prints how to talk to crib.
r() {
	local rhome=/home/$ruser ruid
	ruid=$(id -u $ruser)
	runuser -u $ruser -- env -i HOME=$rhome USER=$ruser LOGNAME=$ruser \
		PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin XDG_RUNTIME_DIR=/run/user/$ruid \
		DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$ruid/bus "$@"
}
rc() {
	local sock
	sock=unix:///run/user/$(id -u $ruser)/crib/crib.sock
	r crictl --runtime-endpoint "$sock" --image-endpoint "$sock" --timeout 120s "$@" 2>>"$OUT/crictl.stderr"
}
check_make_run() {
	local rhome=/home/$ruser ruid out line pod ctr dir
	useradd -m -s /bin/bash $ruser
	ruid=$(id -u $ruser)
	echo "subuid: $(grep -E "^(tester|$ruser):" /etc/subuid | paste -sd' ' -); subgid: $(grep -E "^(tester|$ruser):" /etc/subgid | paste -sd' ' -)"
	install -d -o $ruser -g $ruser "$rhome/.config" "$rhome/.config/crib" "$rhome/logs"
	install -o $ruser -g $ruser -m 0644 "$G/registries.conf" "$G/policy.json" "$rhome/.config/crib/"
	printf '[image]\nregistries_conf = "%s"\npolicy_path = "%s"\n' \
		"$rhome/.config/crib/registries.conf" "$rhome/.config/crib/policy.json" >"$rhome/.config/crib/crib.toml"
	sed -e "s|/home/tester/lane-logs|$rhome/logs|" -e 's/lane-limits/run-limits/g' "$G/pod.json" >"$rhome/pod.json"
	chown $ruser:$ruser "$rhome/.config/crib/crib.toml" "$rhome/pod.json"

	out=$(HOST_SETUP_PACKAGES=no "$H/scripts/run-as-user.sh" $ruser "$H/bin/crib" 2>&1)
	echo "$out" | sed 's/^/    run-as-user: /'
	if [ "$(r systemctl --user is-active crib-run.service)" = active ]; then
		pass "make run: crib-run.service of $ruser's manager" "$(echo "$out" | grep -m1 '^crib is running')"
	else
		fail "make run: crib-run.service of $ruser's manager" "$(echo "$out" | tail -n 3 | paste -sd';' -)"
		return
	fi
	line=$(r systemd-run --user --scope --quiet -- crib doctor 2>&1 | grep -E '^[a-z]+ +cgroups:')
	case $line in
	ok*delegated*) pass "make run: crib doctor cgroups" "$line" ;;
	*) fail "make run: crib doctor cgroups" "${line:-no cgroups line}" ;;
	esac
	if ! rc pull docker.io/library/busybox:latest >/dev/null || ! pod=$(rc runp "$rhome/pod.json") ||
		! ctr=$(rc create "$pod" "$G/ctr-limits.json" "$rhome/pod.json") || ! rc start "$ctr" >/dev/null; then
		fail "make run: pod memory.max" "pod or container failed: $(tail -n 3 "$OUT/crictl.stderr" | paste -sd';' -)"
	else
		dir=$(cgdir "$(rc inspect -o go-template --template '{{.info.pid}}' "$ctr")")
		case $dir in
		/sys/fs/cgroup/user.slice/user-$ruid.slice/user@$ruid.service/*)
			echo "make run: container cgroup ${dir#/sys/fs/cgroup}"
			expect "make run: pod memory.max" "$(cat "$dir/memory.max" 2>&1)" 67108864 ;;
		*) fail "make run: pod memory.max" "cgroup ${dir#/sys/fs/cgroup} is outside user@$ruid.service" ;;
		esac
		rc rmp --all --force >/dev/null
	fi
	r journalctl --user -u crib-run.service --no-pager >"$OUT/crib-run.journal" 2>&1
	out=$("$H/scripts/run-as-user.sh" --stop $ruser 2>&1)
	echo "    stop: $out"
	sleep 1
	if [ "$(r systemctl --user is-active crib-run.service)" != active ] && ! pgrep -u $ruser -x crib >/dev/null; then
		pass "make stop" "$out"
	else
		fail "make stop" "$out; crib-run.service $(r systemctl --user is-active crib-run.service), crib pids: $(pgrep -u $ruser -x crib | paste -sd' ' -)"
	fi
}
