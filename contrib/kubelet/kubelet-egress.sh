#!/bin/bash
# kubelet-egress.sh SOCKET [CRIB OPTIONS]
#
# Lets an API server on the host reach the kubelet that crib-kubelet.sh runs
# inside crib's network namespace (for kubectl logs, exec, attach,
# port-forward), where the host cannot route: the kubelet listens on
# 127.0.0.1:10250 of crib's namespace, and the node's addresses (its name,
# crib's slirp4netns address 10.0.2.100) mean nothing in the host's.
#
# Serves an HTTP CONNECT proxy on the unix socket SOCKET from inside crib's
# namespaces (`crib unshare`; a filesystem socket is reachable from every
# network namespace). Point the API server's egress selector at it:
#   kube-apiserver --egress-selector-config-file FILE, with FILE:
#     apiVersion: apiserver.k8s.io/v1beta1
#     kind: EgressSelectorConfiguration
#     egressSelections:
#     - name: cluster
#       connection:
#         proxyProtocol: HTTPConnect
#         transport: {uds: {udsName: SOCKET}}
# Every CONNECT to port KUBELET_PORT (default 10250) of any host goes to
# 127.0.0.1:KUBELET_PORT in crib's namespace (the only node is this one);
# other ports are refused, so nothing is dialled beyond the kubelet.
# Run it as the user who runs crib, with the same CRIB OPTIONS (--root,
# --runroot, ...). Needs socat. Environment: CRIB (default: crib on PATH).
set -euo pipefail

port=${KUBELET_PORT:-10250}

# handle_connect: one proxied connection on stdin/stdout (socat EXEC).
handle_connect() {
	local method target proto line
	IFS=' ' read -r method target proto || exit 0
	while IFS= read -r line && [[ -n ${line%$'\r'} ]]; do :; done
	if [[ $method != CONNECT || ${target##*:} != "$port" ]]; then
		printf 'HTTP/1.1 403 Forbidden\r\n\r\n'
		echo "kubelet-egress.sh: refused $method $target" >&2
		exit 0
	fi
	printf 'HTTP/1.1 200 Connection established\r\n\r\n'
	exec socat STDIO "TCP:127.0.0.1:$port"
}

if [[ ${1:-} == --handle ]]; then
	handle_connect
	exit 0
fi

sock=${1:?usage: kubelet-egress.sh SOCKET [CRIB OPTIONS]}
shift
sock=$(realpath -m "$sock")
crib=${CRIB:-$(command -v crib || true)}
[[ -x $crib ]] || { echo "kubelet-egress.sh: crib not found: put it on PATH or set CRIB" >&2; exit 1; }
command -v socat >/dev/null || { echo "kubelet-egress.sh: needs socat (Debian: apt-get install socat)" >&2; exit 1; }
self=$(realpath "$0")
rm -f "$sock"
exec "$crib" unshare "$@" -- env KUBELET_PORT="$port" \
	socat "UNIX-LISTEN:$sock,fork,unlink-early" "EXEC:$self --handle"
