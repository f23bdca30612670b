#!/bin/bash
# build-critest.sh — critest (a Go test binary) built once from the module
# cache and kept in conformance/.cache; prints its path. Used by
# conformance/run.sh on the host and by test/uml/run.sh for the guest.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=$here/.cache
version=${CRITEST_VERSION:-v1.37.0}
export PATH=/usr/local/go/bin:$PATH GOFLAGS=-buildvcs=false

critest=$cache/critest-$version
if [ ! -x "$critest" ]; then
	mkdir -p "$cache"
	src=$(cd "$here/.." && go mod download -json "sigs.k8s.io/cri-tools@$version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
	rm -rf "$cache/cri-tools"
	cp -r "$src" "$cache/cri-tools"
	chmod -R u+w "$cache/cri-tools"
	(cd "$cache/cri-tools" && go test -c -o "$critest.tmp" ./cmd/critest) >&2
	mv "$critest.tmp" "$critest"
fi
echo "$critest"
