#!/bin/bash
# build-kubelet.sh [OUT] — build the kubelet KUBELET_VERSION (default
# v1.37.2) from the Go module proxy into OUT (default ./kubelet); an OUT
# that already reports the version is kept. See build-k8s.sh, which does the
# work for any Kubernetes command.
set -euo pipefail
K8S_VERSION=${KUBELET_VERSION:-v1.37.2} exec "$(dirname "$(realpath "$0")")/build-k8s.sh" kubelet "${1:-./kubelet}"
