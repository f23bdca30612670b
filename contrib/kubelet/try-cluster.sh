#!/bin/bash
# try-cluster.sh [USER] — as root, a throw-away one-node Kubernetes cluster
# whose node is a rootless crib, checked end to end, then taken down.
#
# Starts, on the host's loopback only: etcd, kube-apiserver (TLS, client
# certificates from a CA made here, Node,RBAC) and kube-controller-manager;
# then, as USER (default crib-test): crib serve with its own root and
# runroot, the kubelet through crib-kubelet.sh, and kubelet-egress.sh.
# Checks with kubectl: the node registers and is Ready; a Deployment (with
# its service-account token volume) and a plain Pod run on crib and crictl
# sees their containers; kubectl logs, exec (with stdin and exit code),
# port-forward and the node proxy work; deleted workloads leave crib.
# Prints "N passed, N failed"; exits non-zero when a check failed. Stops
# everything it started, by PID. Keeps its work directory (logs) only when
# a check failed.
#
# The two network paths, since the kubelet lives in crib's network
# namespace, whose 127.0.0.1 is not the host's, and slirp4netns hides the
# host's loopback:
#   kubelet -> API server: the kubelet's kubeconfig names crib's pull proxy
#     (RUNROOT/pull-proxy.url, a SOCKS5 front in crib's namespace whose
#     connections crib opens from the host) as its proxy-url.
#   API server -> kubelet (logs, exec, port-forward): the API server's
#     egress selector sends "cluster" traffic to kubelet-egress.sh, an HTTP
#     CONNECT proxy on a unix socket that dials the kubelet inside crib's
#     namespace. The API server addresses the node by its InternalIP, so it
#     resolves no name; without the egress selector it would dial crib's
#     slirp4netns address from the host, where that address is not local.
#
# Needs: bin/crib and bin/crictl (make build crictl), scripts/host-setup.sh
# USER done (make try-cluster does both), openssl, socat and curl (installed
# with apt-get when missing), and the local registry (started with
# conformance/images.sh when absent). Builds the Kubernetes binaries and
# etcd into .cache/ when missing (build-k8s.sh, build-etcd.sh).
# Environment: K8S_VERSION (v1.37.2), ETCD_VERSION (v3.7.3), and KUBELET,
# KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBECTL, ETCD, CRIB, CRICTL to
# use other binaries. Fixed loopback ports: 2379-2381, 6443, 10257.
set -euo pipefail

user=${1:-crib-test}
here=$(dirname "$(realpath "$0")")
repo=$(realpath "$here/../..")
k8s_version=${K8S_VERSION:-v1.37.2}
etcd_version=${ETCD_VERSION:-v3.7.3}
node=crib-node
api=https://127.0.0.1:6443

die() { echo "try-cluster.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (it starts the control plane and crib as $user)"
id "$user" >/dev/null 2>&1 || die "no user $user: run scripts/host-setup.sh $user"
missing=()
for pair in openssl:openssl socat:socat curl:curl util-linux:setpriv; do
	command -v "${pair#*:}" >/dev/null || missing+=("${pair%%:*}")
done
if ((${#missing[@]})); then
	echo "try-cluster.sh: installing ${missing[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 || die "cannot install ${missing[*]}"
fi
uid=$(id -u "$user") gid=$(id -g "$user")
home=$(getent passwd "$user" | cut -d: -f6)
rundir=/run/user/$uid
[[ -d $rundir ]] || die "no $rundir: run scripts/host-setup.sh $user"

crib=${CRIB:-$repo/bin/crib}
crictl=${CRICTL:-$repo/bin/crictl}
[[ -x $crib && -x $crictl ]] || die "needs $crib and $crictl: make build crictl"
cache=$repo/.cache
kubelet=${KUBELET:-$cache/kubelet-$k8s_version}
apiserver=${KUBE_APISERVER:-$cache/kube-apiserver-$k8s_version}
kcm=${KUBE_CONTROLLER_MANAGER:-$cache/kube-controller-manager-$k8s_version}
kubectl_bin=${KUBECTL:-$cache/kubectl-$k8s_version}
etcd=${ETCD:-$cache/etcd-$etcd_version}
for pair in "kubelet:$kubelet" "kube-apiserver:$apiserver" "kube-controller-manager:$kcm" "kubectl:$kubectl_bin"; do
	[[ -x ${pair#*:} ]] || K8S_VERSION=$k8s_version "$here/build-k8s.sh" "${pair%%:*}" "${pair#*:}"
done
[[ -x $etcd ]] || ETCD_VERSION=$etcd_version "$here/build-etcd.sh" "$etcd"

for port in 2379 2380 2381 6443 10257; do
	! ss -Hltn "sport = :$port" | grep -q . || die "port $port is in use on the host"
done
curl -sf http://127.0.0.1:5000/v2/ >/dev/null || "$repo/conformance/images.sh"

work=$(mktemp -d /tmp/crib-try-cluster.XXXXXX)
chmod 0755 "$work"
tag=try-cluster-$$
root=$home/.local/share/crib-$tag
runroot=$rundir/crib-$tag
export KUBECONFIG=$work/admin.kubeconfig
log() { echo "== $*"; }

# --- clean-up: everything started here, by PID, in reverse order --------
pids=() # "name:pid", in start order
started() { pids+=("$1:$2"); }
stop_pid() { # NAME PID
	local i
	kill -0 "$2" 2>/dev/null || return 0
	kill "$2" 2>/dev/null || true
	for i in $(seq 100); do
		kill -0 "$2" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$2" 2>/dev/null; then
		echo "$1 ($2) ignored SIGTERM for 20s: killing it" >&2
		kill -KILL "$2" 2>/dev/null || true
	fi
	wait "$2" 2>/dev/null || true
}
failed=0 passed=0
cleanup() {
	set +e
	log "cleaning up"
	# Workloads first, while the kubelet and crib still run.
	if [[ -r $KUBECONFIG ]]; then
		kubectl delete deployment/ticker pod/web --ignore-not-found --wait=false >/dev/null 2>&1
	fi
	local i entry
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		entry=${pids[i]}
		if [[ ${entry%%:*} == crib ]]; then
			# Pods the kubelet left would keep crib's namespaces up.
			as_user "$crictl" --runtime-endpoint "unix://$runroot/crib.sock" rmp --all --force >/dev/null 2>&1
		fi
		stop_pid "${entry%%:*}" "${entry#*:}"
		if [[ ${entry%%:*} == crib ]]; then
			stop_holder
		fi
	done
	rm -rf "$root" "$runroot"
	if ((failed == 0)); then
		rm -rf "$work"
	else
		echo "logs kept in $work" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_holder: crib leaves the process holding its namespaces when
# containers remain; after rmp there should be none, but never leave it.
stop_holder() {
	local f=$runroot/holder.json pid
	[[ -r $f ]] || return 0
	for pid in $(grep -o '"\(pid\|helperPid\)": *[0-9]*' "$f" | grep -o '[0-9]*$'); do
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	done
}

as_user() {
	setpriv --reuid="$uid" --regid="$gid" --init-groups \
		env -i HOME="$home" USER="$user" LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
		XDG_RUNTIME_DIR="$rundir" XDG_CONFIG_HOME="$work/xdg" "$@"
}
kubectl() { "$kubectl_bin" "$@"; }

# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds.
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 2; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	echo "gave up after ${secs}s waiting for $what" >&2
	return 1
}

# --- certificates ---------------------------------------------------------
pki=$work/pki
mkdir -m 0755 "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=crib-try-cluster-ca \
	-keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
# cert NAME SUBJECT [SAN]: a key and a certificate signed by the CA; with
# a SAN it is also a server certificate.
cert() {
	local ext="extendedKeyUsage=clientAuth"
	[[ -n ${3:-} ]] && ext="extendedKeyUsage=serverAuth,clientAuth"$'\n'"subjectAltName=$3"
	openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
	openssl x509 -req -days 1 -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
		-extfile <(echo "$ext") -out "$pki/$1.crt" 2>/dev/null
}
cert apiserver /CN=kube-apiserver "IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc"
cert admin /O=system:masters/CN=crib-try-admin
cert kcm /CN=system:kube-controller-manager
cert kubelet "/O=system:nodes/CN=system:node:$node"
cert apiserver-kubelet-client /CN=kube-apiserver-kubelet-client
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
chmod 0644 "$pki/ca.crt"

# kubeconfig FILE CERT KEY [PROXY_URL]
kubeconfig() {
	cat >"$1" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: crib-try
		  cluster:
		    server: $api
		    certificate-authority: $pki/ca.crt
		${4:+    proxy-url: $4}
		users:
		- name: user
		  user:
		    client-certificate: $2
		    client-key: $3
		contexts:
		- name: crib-try
		  context: {cluster: crib-try, user: user}
		current-context: crib-try
	EOF
}
kubeconfig "$work/admin.kubeconfig" "$pki/admin.crt" "$pki/admin.key"
kubeconfig "$work/kcm.kubeconfig" "$pki/kcm.crt" "$pki/kcm.key"

# --- control plane --------------------------------------------------------
log "etcd $etcd_version on 127.0.0.1:2379"
"$etcd" --name crib-try --data-dir "$work/etcd" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster crib-try=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
	>"$work/etcd.log" 2>&1 &
started etcd $!
wait_for 30 "etcd" curl -sf http://127.0.0.1:2379/health

mkdir -m 0755 "$work/egress"
chown "$uid:$gid" "$work/egress"
cat >"$work/egress.yaml" <<EOF
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: $work/egress/node.sock
EOF
log "kube-apiserver $k8s_version on $api"
# --endpoint-reconciler-type=none: the kubernetes Service may not point at
# a loopback address, and nothing here uses it.
"$apiserver" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=6443 \
	--etcd-servers=http://127.0.0.1:2379 --endpoint-reconciler-type=none \
	--tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
	--client-ca-file="$pki/ca.crt" --authorization-mode=Node,RBAC \
	--service-account-issuer=https://kubernetes.default.svc \
	--service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
	--service-cluster-ip-range=10.0.0.0/24 \
	--kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
	--kubelet-client-key="$pki/apiserver-kubelet-client.key" \
	--kubelet-preferred-address-types=InternalIP \
	--egress-selector-config-file="$work/egress.yaml" \
	>"$work/apiserver.log" 2>&1 &
started kube-apiserver $!
wait_for 90 "kube-apiserver /readyz" kubectl get --raw /readyz
kubectl create clusterrolebinding crib-try-apiserver-kubelet --clusterrole=system:kubelet-api-admin \
	--user=kube-apiserver-kubelet-client >/dev/null

log "kube-controller-manager $k8s_version (default service accounts, root CA, Deployments)"
"$kcm" --kubeconfig="$work/kcm.kubeconfig" --authentication-kubeconfig="$work/kcm.kubeconfig" \
	--authorization-kubeconfig="$work/kcm.kubeconfig" --bind-address=127.0.0.1 --secure-port=10257 \
	--use-service-account-credentials --service-account-private-key-file="$pki/sa.key" \
	--root-ca-file="$pki/ca.crt" --leader-elect=false >"$work/kcm.log" 2>&1 &
started kube-controller-manager $!
wait_for 60 "the default service account" kubectl get serviceaccount default

# --- the node: crib, the kubelet, the way back in -------------------------
log "crib as $user (root $root)"
install -d -o "$uid" -g "$gid" "$work/xdg"
install -m 0644 "$repo/conformance/registries.conf" "$repo/conformance/policy.json" "$work/"
crib_opts=(--root "$root" --runroot "$runroot")
cd "$work"
# Not through as_user in the background: $! must be crib's own pid.
setpriv --reuid="$uid" --regid="$gid" --init-groups \
	env -i HOME="$home" USER="$user" LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
	XDG_RUNTIME_DIR="$rundir" "$crib" serve "${crib_opts[@]}" \
	--registries-conf "$work/registries.conf" --signature-policy "$work/policy.json" \
	>"$work/crib.log" 2>&1 &
started crib $!
wait_for 30 "crib's socket and pull proxy" test -S "$runroot/crib.sock" -a -s "$runroot/pull-proxy.url"
wait_for 10 "crib to answer" as_user "$crictl" --runtime-endpoint "unix://$runroot/crib.sock" version

install -d -o "$uid" -g "$gid" -m 0700 "$work/kubelet"
install -o "$uid" -g "$gid" -m 0600 "$pki/kubelet.key" "$work/kubelet/kubelet.key"
install -o "$uid" -g "$gid" -m 0644 "$pki/kubelet.crt" "$work/kubelet/kubelet.crt"
kubeconfig "$work/kubelet/kubeconfig" "$work/kubelet/kubelet.crt" "$work/kubelet/kubelet.key" \
	"$(cat "$runroot/pull-proxy.url")"
chown "$uid:$gid" "$work/kubelet/kubeconfig"

log "kubelet-egress.sh on $work/egress/node.sock"
setpriv --reuid="$uid" --regid="$gid" --init-groups \
	env -i HOME="$home" USER="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
	XDG_RUNTIME_DIR="$rundir" CRIB="$crib" \
	"$here/kubelet-egress.sh" "$work/egress/node.sock" "${crib_opts[@]}" >"$work/egress.log" 2>&1 &
started kubelet-egress $!
wait_for 10 "the egress socket" test -S "$work/egress/node.sock"

log "kubelet $k8s_version as node $node"
# --client-ca-file: the kubelet accepts the API server's client certificate.
setpriv --reuid="$uid" --regid="$gid" --init-groups \
	env -i HOME="$home" USER="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
	XDG_RUNTIME_DIR="$rundir" XDG_CONFIG_HOME="$work/xdg" KUBELET="$kubelet" CRIB="$crib" \
	"$here/crib-kubelet.sh" --kubeconfig "$work/kubelet/kubeconfig" --client-ca-file "$pki/ca.crt" "${crib_opts[@]}" -- \
	--hostname-override="$node" --v=2 >"$work/kubelet.log" 2>&1 &
started kubelet $!

# --- checks ---------------------------------------------------------------
# check NAME CMD...: run one check, count it, show why it failed.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		passed=$((passed + 1))
		echo "PASS $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name"
		[[ -n $out ]] && sed 's/^/    /' <<<"$out" | tail -20
	fi
	return 0
}
crictl_user() { as_user "$crictl" --runtime-endpoint "unix://$runroot/crib.sock" "$@"; }

node_ready() {
	wait_for 60 "node $node to register" kubectl get "node/$node" &&
		kubectl wait --for=condition=Ready "node/$node" --timeout=120s &&
		kubectl get node "$node" -o wide
}
deploy_ticker() {
	kubectl apply -f - <<-EOF
		apiVersion: apps/v1
		kind: Deployment
		metadata: {name: ticker}
		spec:
		  replicas: 2
		  selector: {matchLabels: {app: ticker}}
		  template:
		    metadata: {labels: {app: ticker}}
		    spec:
		      nodeName: $node
		      terminationGracePeriodSeconds: 2
		      containers:
		      - name: ticker
		        image: docker.io/library/busybox
		        command: ["sh", "-c", "ls /var/run/secrets/kubernetes.io/serviceaccount; while true; do echo tick; sleep 1; done"]
	EOF
	kubectl rollout status deployment/ticker --timeout=120s
}
pod_web() {
	kubectl apply -f - <<-EOF
		apiVersion: v1
		kind: Pod
		metadata: {name: web}
		spec:
		  nodeName: $node
		  terminationGracePeriodSeconds: 2
		  containers:
		  - name: web
		    image: docker.io/library/busybox
		    command: ["sh", "-c", "mkdir -p /www && echo served by crib > /www/index.html && exec httpd -f -p 8080 -h /www"]
	EOF
	kubectl wait --for=condition=Ready pod/web --timeout=120s
}
crictl_sees() { # the kubelet's containers, as crib lists them
	local n
	n=$(crictl_user ps --state running --label io.kubernetes.pod.namespace=default -q | wc -l)
	crictl_user ps --label io.kubernetes.pod.namespace=default
	((n == 3))
}
ticker_pod() { kubectl get pod -l app=ticker -o jsonpath='{.items[0].metadata.name}'; }
logs_work() {
	local out
	out=$(kubectl logs "$(ticker_pod)")
	echo "$out" | head -5
	grep -qx token <<<"$out" && grep -qx tick <<<"$out"
}
exec_works() {
	local pod out
	pod=$(ticker_pod)
	out=$(kubectl exec "$pod" -- cat /etc/hostname)
	echo "exec printed: $out"
	[[ $out == "$pod" ]]
}
exec_stdin_works() {
	local out
	out=$(echo "through stdin" | kubectl exec -i web -- sh -c 'read line; echo "got: $line"')
	echo "exec -i printed: $out"
	[[ $out == "got: through stdin" ]]
}
exec_exit_code() {
	local rc=0
	kubectl exec web -- sh -c 'exit 3' || rc=$?
	echo "exit code: $rc"
	((rc == 3))
}
port_forward_works() {
	local pf rc=0 out=""
	# The binary, not the kubectl function: $! must be its own pid.
	"$kubectl_bin" port-forward pod/web 18080:8080 >"$work/port-forward.log" 2>&1 &
	pf=$!
	wait_for 15 "port-forward" curl -sf http://127.0.0.1:18080/index.html || rc=1
	out=$(curl -sf http://127.0.0.1:18080/index.html) || rc=1
	stop_pid port-forward "$pf"
	echo "through port-forward: $out"
	((rc == 0)) && [[ $out == "served by crib" ]]
}
node_proxy_works() { [[ $(kubectl get --raw "/api/v1/nodes/$node/proxy/healthz") == ok ]]; }
no_running_containers() { ! crictl_user ps --state running -q | grep -q .; }
workloads_leave() {
	kubectl delete deployment/ticker pod/web --wait=true --timeout=60s &&
		wait_for 60 "the containers to stop" no_running_containers
}

log "checks"
check "node $node registers and is Ready" node_ready
check "a Deployment of 2 replicas (with service-account token volume) rolls out" deploy_ticker
check "a plain Pod runs" pod_web
check "crictl sees the 3 containers running in crib" crictl_sees
check "kubectl logs" logs_work
check "kubectl exec" exec_works
check "kubectl exec -i (stdin)" exec_stdin_works
check "kubectl exec returns the exit code" exec_exit_code
check "kubectl port-forward" port_forward_works
check "node proxy (/healthz through the API server)" node_proxy_works
check "deleted workloads stop in crib" workloads_leave

echo "$passed passed, $failed failed"
((failed == 0))
