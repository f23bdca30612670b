#!/bin/bash
# build-kubelet.sh [OUT] — build the kubelet (default v1.37.2) from the Go
# module proxy, for a node with Go but without Kubernetes' release binaries.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points its staging
# modules (k8s.io/api, client-go, ...) at directories the module zip does not
# hold. So this builds from a throw-away module that requires it and points
# each staging module at its published v0.x twin of the same release.
# OUT defaults to ./kubelet; an OUT that already reports the version is kept.
# Anyone with the official binary (dl.k8s.io/release/v1.37.2/bin/linux/amd64/
# kubelet) can use that instead.
set -euo pipefail

version=${KUBELET_VERSION:-v1.37.2}
out=$(realpath -m "${1:-./kubelet}")
if [[ -x $out ]] && "$out" --version 2>/dev/null | grep -qx "Kubernetes $version"; then
	echo "kubelet $version already at $out"
	exit 0
fi
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
mkdir -p "$(dirname "$out")"
staging=v0.${version#v1.}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
[[ -r $gomod ]] || { echo "build-kubelet.sh: cannot fetch k8s.io/kubernetes@$version from the module proxy" >&2; exit 1; }
{
	printf 'module crib.local/kubelet-build\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$version"
	sed -n "s#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 $staging#p" "$gomod"
	printf ')\n'
} >go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubelet"\n' >tools.go
go mod tidy >/dev/null 2>&1 || go mod tidy
echo "building kubelet $version (a few minutes on 2 cores)..."
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
ldflags+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$version") -X k8s.io/component-base/version.gitTreeState=clean"
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" k8s.io/kubernetes/cmd/kubelet
mv "$out.tmp" "$out"
"$out" --version
