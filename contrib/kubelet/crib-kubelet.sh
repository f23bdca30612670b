#!/bin/bash
# crib-kubelet.sh [--standalone] [--kubeconfig FILE] [CRIB OPTIONS] [-- KUBELET ARGS]
#
# Runs a kubelet (v1.37) on a running rootless crib, inside crib's user,
# mount and network namespaces (`crib unshare`), as uid 0 there:
#   1. `crib kubelet-config --write` writes ~/.config/crib/kubelet.yaml for
#      this crib (its socket, the cgroup driver it reports, the settings a
#      kubelet in a user namespace needs) and makes the directories it names;
#   2. the kubelet starts with that file and its --root-dir under crib's
#      root. crib's mount namespace has writable copies of /etc, /run,
#      /var/lib and /var/log (rootless.copy_up), where the kubelet makes what
#      it hard-codes (/var/lib/kubelet/device-plugins, /var/log/containers).
#
# --standalone: no API server; static pods from ~/.config/crib/manifests.
# --kubeconfig FILE: join the API server FILE names (standalone otherwise
#   needs --standalone, so that a missing kubeconfig is not silently ignored).
#   An API server on the host's loopback is out of reach from crib's network
#   namespace: give the cluster in FILE `proxy-url:` the URL crib publishes
#   in RUNROOT/pull-proxy.url (a SOCKS5 proxy whose connections crib opens
#   from the host; it keeps its port across crib restarts).
# --client-ca-file CA: the CA of the API server's client certificate, which
#   the kubelet's API then accepts (logs, exec, port-forward).
# CRIB OPTIONS (--root, --runroot, --config, ...) must match the running crib.
# Environment: KUBELET (default: kubelet on PATH, else ~/.local/bin/kubelet
# where build-kubelet.sh puts it in the README), CRIB (default: crib on
# PATH), KUBELET_CONFIG (default: kubelet.yaml beside crib's config).
set -euo pipefail

crib=${CRIB:-$(command -v crib || true)}
kubelet=${KUBELET:-$(command -v kubelet || echo "$HOME/.local/bin/kubelet")}
[[ -x $crib ]] || { echo "crib-kubelet.sh: crib not found: put it on PATH or set CRIB" >&2; exit 1; }
[[ -x $kubelet ]] || { echo "crib-kubelet.sh: kubelet not found: put it on PATH or set KUBELET (contrib/kubelet/build-kubelet.sh builds one)" >&2; exit 1; }

standalone=false kubeconfig="" client_ca="" crib_opts=() kubelet_args=()
while (($#)); do
	case $1 in
	--standalone) standalone=true ;;
	--kubeconfig) kubeconfig=${2:?--kubeconfig needs a file}; shift ;;
	--kubeconfig=*) kubeconfig=${1#*=} ;;
	--client-ca-file) client_ca=${2:?--client-ca-file needs a file}; shift ;;
	--client-ca-file=*) client_ca=${1#*=} ;;
	--) shift; kubelet_args=("$@"); break ;;
	*) crib_opts+=("$1") ;;
	esac
	shift
done
if [[ $standalone == false && -z $kubeconfig ]]; then
	echo "crib-kubelet.sh: give --standalone (static pods only) or --kubeconfig FILE (join an API server)" >&2
	exit 2
fi
if [[ -n $kubeconfig ]]; then
	[[ -r $kubeconfig ]] || { echo "crib-kubelet.sh: cannot read $kubeconfig" >&2; exit 1; }
	kubeconfig=$(realpath "$kubeconfig")
fi

conf=${KUBELET_CONFIG:-}
mode=()
$standalone && mode=(--standalone)
[[ -n $client_ca ]] && mode+=(--client-ca-file "$client_ca")
written=$("$crib" kubelet-config "${mode[@]}" --write ${conf:+--file "$conf"} "${crib_opts[@]}")
echo "$written"
conf=$(sed -n 's/^wrote //p' <<<"$written")
root=$(sed -n 's|^volumePluginDir: \(.*\)/volume-plugins$|\1|p' "$conf")
[[ -n $root ]] || { echo "crib-kubelet.sh: no volumePluginDir in $conf" >&2; exit 1; }

args=(--config "$conf" --root-dir "$root")
[[ -n $kubeconfig ]] && args+=(--kubeconfig "$kubeconfig")
exec "$crib" unshare "${crib_opts[@]}" -- "$kubelet" "${args[@]}" "${kubelet_args[@]}"
