# crib — see README.md. `make run` and `make test` are the two commands a
# person needs; both install what is missing when run as root.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(CURDIR)/bin:$(PATH)
export GOFLAGS := -buildvcs=false

GO      ?= go
# nri_no_wasm: NRI plugins are executables; leaving out the WebAssembly
# plugin runtime (wazero) makes the binary 3.7 MB smaller and the daemon
# map about 1 MiB less of it.
TAGS    := containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper nri_no_wasm
# A semantic version (the kubelet parses it): the release, then the commit.
VERSION ?= 0.1.0-dev+$(shell git describe --always --dirty 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION)

# The unprivileged user `make run` starts crib as, and the one tests use.
CRIB_USER ?= crib
TEST_USER ?= crib-test
CRICTL_VERSION := v1.37.0

.PHONY: race test-v2 all build fmt-check unit integration test run stop conformance bench crictl host-setup vet clean fuzz install test-images kubelet try-cluster

all: build

build:
	$(GO) build -tags "$(TAGS)" -ldflags "$(LDFLAGS)" -o bin/crib ./cmd/crib
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/crib-hostside ./cmd/crib-hostside

vet:
	$(GO) vet -tags "$(TAGS)" ./...

fmt-check:
	@files=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	if [ -n "$$files" ]; then echo "not gofmt-clean (run gofmt -w):" $$files; exit 1; fi

# Unit tests: no root, no daemons beyond what a test starts itself. The
# guard rails run first: gofmt, go vet, and internal/layering (no package
# imports upward).
unit: fmt-check
	$(GO) vet -tags "$(TAGS)" ./...
	$(GO) test -tags "$(TAGS)" -count=1 ./...
	$(MAKE) race

# The packages whose handlers run concurrently (CRI calls, NRI plugins,
# pod locks, stream sessions), again under the race detector. runtime is
# left out: its tests start real containers and take minutes with -race.
RACE_PKGS = ./cri/ ./nri/ ./sandbox/ ./server/streaming/ ./internal/idindex/ ./internal/steptrace/
race:
	$(GO) test -race -tags "$(TAGS)" -count=1 $(RACE_PKGS)

bin/crictl:
	GOBIN=$(CURDIR)/bin $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRICTL_VERSION)

crictl: bin/crictl

host-setup:
	@if [ "$$(id -u)" -eq 0 ]; then TEST_STATE=disposable scripts/host-setup.sh $(TEST_USER); \
	else echo "not root: skipping host setup (an admin must have run scripts/host-setup.sh $(TEST_USER))"; fi

# The local registry on 127.0.0.1:5000 with the offline test images
# (idempotent: pushes only what changed). Integration tests, critest and the
# benchmarks pull from it, so each target that needs it starts it itself.
test-images:
	conformance/images.sh

# What tests build once and keep: the kubelet, the UML guest image. As
# root they live outside the checkout, so that a fresh clone on the same
# machine (CI's) finds them; each is keyed by its version or recipe, so a
# change rebuilds it. CACHE_DIR=... overrides.
CACHE_DIR ?= $(if $(filter 0,$(shell id -u)),/var/cache/crib-dev,$(CURDIR)/.cache)
export UML_CACHE ?= $(CACHE_DIR)/uml

# A kubelet for the end-to-end test of a rootless kubelet on crib, built
# once from the Go module proxy (a few minutes) and kept in CACHE_DIR.
KUBELET_VERSION := v1.37.2
KUBELET_BIN := $(CACHE_DIR)/kubelet-$(KUBELET_VERSION)
$(KUBELET_BIN):
	KUBELET_VERSION=$(KUBELET_VERSION) contrib/kubelet/build-kubelet.sh $@

kubelet: $(KUBELET_BIN)

# A throw-away one-node cluster (etcd, kube-apiserver, controller-manager on
# the host's loopback) whose node is a kubelet on rootless crib, checked
# with kubectl (logs, exec, port-forward) and taken down. Not part of test:
# its first run builds four Kubernetes binaries and etcd (.cache/).
try-cluster: build crictl host-setup test-images
	contrib/kubelet/try-cluster.sh $(TEST_USER)

# Integration tests start the real `crib serve` as $(TEST_USER) and talk to
# it from the host namespaces; one runs a real kubelet on it. Together they
# take longer than go test's default 10-minute limit.
integration: build crictl host-setup test-images $(KUBELET_BIN)
	KUBELET_BIN=$(KUBELET_BIN) CRIB_BIN=$(CURDIR)/bin/crib CRICTL_BIN=$(CURDIR)/bin/crictl CRIB_TEST_USER=$(TEST_USER) \
		$(GO) test -tags "$(TAGS) integration" -count=1 -timeout 45m -v -run Integration ./server/

# host-setup first: on a fresh machine the unit tests already need runc,
# conmon, CNI plugins and the registry binary (as root it installs them).
test: host-setup unit fuzz test-v2 integration conformance

# The cgroup v2 + systemd lane: a Debian guest under User-Mode Linux
# (systemd as PID 1, cgroup v2 only, a lingering user) where crib runs as
# a user service and pods are checked confined. The guest image is built
# once per recipe into CACHE_DIR/uml (test/uml/README.md).
test-v2: build crictl host-setup $(KUBELET_BIN)
	KUBELET_BIN=$(KUBELET_BIN) test/uml/run.sh

# Each fuzz target for a short while (CI-sized): a number of executions
# per target, about ten seconds' worth each here, not a duration. Go
# 1.26's fuzzing coordinator can fail a run with a bare "context deadline
# exceeded" when a -fuzztime duration ends while a worker is busy
# (go.dev/issue/75804, fixed in Go 1.27); a count has no deadline to race.
# FUZZ_TIME=5m (or any -fuzztime value) for a real hunt, for every target.
# A failing input is written under the package's testdata/fuzz/ and then
# runs with every `make unit`.
FUZZ_TIME ?=
FUZZ_TARGETS := internal/config:FuzzParseConfig:20000x storage:FuzzNormalize:15000x \
	storage:FuzzRegistriesConf:150x runtime:FuzzGenerateSpec:40000x cri:FuzzValidate:10000x
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest#*:}; \
		budget=$${FUZZ_TIME:-$$budget}; \
		echo "fuzz $$name in ./$$pkg for $$budget"; \
		$(GO) test -tags "$(TAGS)" -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget ./$$pkg/; \
	done

# critest v1.37.0 against rootless crib, from the host and from inside
# crib's namespaces; fails when a spec in conformance/baseline.txt fails.
conformance: build crictl
	conformance/run.sh
	CGROUPS=none MODES=host FOCUS=NamespaceOption conformance/run.sh
	RUNTIME_HANDLER=runc MODES=inside FOCUS='$(RUNC_FOCUS)' conformance/run.sh

# The runc handler's own run (crun is the default where it works): the
# specs whose outcome is the OCI runtime's, inside crib's namespaces only.
RUNC_FOCUS ?= Container runtime|Container OOM|Streaming|Security Context bucket|Multiple Containers

bench:
	bench/run.sh

# As root: install what is missing, create $(CRIB_USER), start crib as that
# user in the background. As a normal user: run crib in the foreground.
run: build crictl
	@if [ "$$(id -u)" -eq 0 ]; then scripts/run-as-user.sh $(CRIB_USER) $(CURDIR)/bin/crib; \
	else exec bin/crib serve; fi

stop:
	@scripts/run-as-user.sh --stop $(CRIB_USER)

# Install bin/crib (and beside it crib-hostside, the small host-side
# parent crib serve executes) and its systemd units (user units as a user, system
# units as root); prints the systemctl commands that enable them.
BINDIR ?= $(if $(filter 0,$(shell id -u)),/usr/local/bin,$(HOME)/.local/bin)
install: build
	install -D -m 0755 bin/crib $(BINDIR)/crib
	install -D -m 0755 bin/crib-hostside $(BINDIR)/crib-hostside
	$(BINDIR)/crib install-service

clean:
	rm -rf bin
