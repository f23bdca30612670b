#!/bin/bash
# images.sh — build every offline test image and push it to the local registry.
#
# Builds conformance/imagegen and its stand-in program (testbin) into
# conformance/.cache, starts the registry (registry.sh start, idempotent) and
# runs imagegen, which builds every image of imagegen/images.toml and pushes
# each reference whose manifest in the registry differs from the one built
# (a HEAD on /v2/<repo>/manifests/<tag>); FORCE=1 pushes them all again.
# Prints one summary line. Run as root on Debian 12; no network needed except
# apt for missing packages.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cache=$here/.cache
tags="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
export PATH=$PATH:/usr/local/go/bin

# Host programs the images are made of, and the tools this script runs.
need_packages() {
	local missing=() pkg file
	for pair in busybox:/usr/bin/busybox procps:/usr/bin/pgrep util-linux:/usr/bin/ipcs \
		curl:/usr/bin/curl docker-registry:/usr/bin/docker-registry; do
		pkg=${pair%%:*} file=${pair#*:}
		[[ -x $file ]] || missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return 0
	echo "images.sh: installing ${missing[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

need_packages
mkdir -p "$cache"
cd "$root"
go build -tags "$tags" -o "$cache/imagegen" ./conformance/imagegen
# Static, reproducible: the same source gives the same layer digests.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -buildid=" -o "$cache/testbin" ./conformance/imagegen/testbin
"$here/registry.sh" start >&2

force=()
[[ ${FORCE:-0} == 1 ]] && force=(-force)
exec "$cache/imagegen" -testbin "$cache/testbin" -registry 127.0.0.1:5000 "${force[@]}"
