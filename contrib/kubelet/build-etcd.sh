#!/bin/bash
# build-etcd.sh [OUT] — build etcd ETCD_VERSION (default v3.7.3, the line
# Kubernetes 1.37 is tested with; the apiserver wants at least 3.5.24, and
# Debian 12's etcd-server is 3.4) from the Go module proxy.
#
# go.etcd.io/etcd/server/v3 holds the etcd main package but points its
# sibling modules at ../ directories, so `go install` refuses it; a
# throw-away module that requires it resolves them from the proxy instead.
# OUT defaults to ./etcd; an OUT that already reports the version is kept.
set -euo pipefail

version=${ETCD_VERSION:-v3.7.3}
out=$(realpath -m "${1:-./etcd}")
if [[ -x $out ]] && "$out" --version 2>/dev/null | grep -qx "etcd Version: ${version#v}"; then
	echo "etcd $version already at $out"
	exit 0
fi
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
mkdir -p "$(dirname "$out")"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 'module crib.local/etcd-build\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$version" >go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
go mod tidy >/dev/null 2>&1 || go mod tidy
echo "building etcd $version..."
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp" go.etcd.io/etcd/server/v3
mv "$out.tmp" "$out"
"$out" --version | grep -qx "etcd Version: ${version#v}" || { echo "build-etcd.sh: $out does not report $version" >&2; exit 1; }
echo "etcd $version at $out"
