#!/bin/bash
# build-k8s.sh COMPONENT [OUT] — build one Kubernetes command (kubelet,
# kube-apiserver, kubectl, ...: a directory under k8s.io/kubernetes/cmd) of
# release K8S_VERSION (default v1.37.2) from the Go module proxy, for a
# machine with Go but without Kubernetes' release binaries.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points its staging
# modules (k8s.io/api, client-go, ...) at directories the module zip does not
# hold. So this builds from a throw-away module that requires it and points
# each staging module at its published v0.x twin of the same release.
# OUT defaults to ./COMPONENT; an OUT that already reports the version is
# kept. Anyone with the official binaries (dl.k8s.io/release/VERSION/bin/
# linux/amd64/COMPONENT) can use those instead.
set -euo pipefail

component=${1:?usage: build-k8s.sh COMPONENT [OUT]}
[[ $component =~ ^[a-z0-9-]+$ ]] || { echo "build-k8s.sh: bad component name $component" >&2; exit 2; }
version=${K8S_VERSION:-v1.37.2}
out=$(realpath -m "${2:-./$component}")

# reports_version BINARY: does BINARY say it is $version?
reports_version() {
	case $component in
	kubectl) "$1" version --client 2>/dev/null | grep -qx "Client Version: $version" ;;
	*) "$1" --version 2>/dev/null | grep -qx "Kubernetes $version" ;;
	esac
}

if [[ -x $out ]] && reports_version "$out"; then
	echo "$component $version already at $out"
	exit 0
fi
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
mkdir -p "$(dirname "$out")"
staging=v0.${version#v1.}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
[[ -r $gomod ]] || { echo "build-k8s.sh: cannot fetch k8s.io/kubernetes@$version from the module proxy" >&2; exit 1; }
{
	printf 'module crib.local/k8s-build\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$version"
	sed -n "s#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 $staging#p" "$gomod"
	printf ')\n'
} >go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/%s"\n' "$component" >tools.go
go mod tidy >/dev/null 2>&1 || go mod tidy
echo "building $component $version (minutes on 2 cores)..."
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
ldflags+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$version") -X k8s.io/component-base/version.gitTreeState=clean"
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "k8s.io/kubernetes/cmd/$component"
mv "$out.tmp" "$out"
reports_version "$out" || { echo "build-k8s.sh: $out does not report $version" >&2; exit 1; }
echo "$component $version at $out"
