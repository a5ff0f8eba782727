# echo-operator: every development task. `make` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# The project's own Node 24 (npm package `node`) comes first, whatever the machine has.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE_DEPS := node_modules/.install-stamp
# Where `make run` runs the operator: `local` (a control plane in .cluster/, started if needed) or
# `current` (the current context of KUBECONFIG or ~/.kube/config, as kubectl would use).
CLUSTER ?= local
# Extra operator flags for `make run`, e.g. RUN_FLAGS="--log-filter=debug --port=9090".
RUN_FLAGS ?=
# `make release`: the version (x.y.z) and the cosign key that signs it (a file or a KMS URI; its
# password in COSIGN_PASSWORD); `make release-push`: the registry, e.g. ghcr.io/echo-operator.
VERSION ?=
COSIGN_KEY ?=
REGISTRY ?=
# Optional for `make release`: another chart directory to package (CHART_DIR), or the image of an
# earlier release folder to release again under VERSION (IMAGE_FROM=dist/release/0.1.0: a
# chart-only release).
CHART_DIR ?=
IMAGE_FROM ?=
# Benchmark flags for `make bench` and `make bench-compare`, e.g. BENCH_FLAGS="--n 5000".
BENCH_FLAGS ?=
# The benchmark's peers sit in shared/ beside the main clone (<x>/main, <x>/shared), also seen from
# a git worktree of that clone.
MAIN_CLONE := $(patsubst %/.git,%,$(shell git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo $(CURDIR)/.git))
PEERS ?= $(abspath $(MAIN_CLONE)/../shared/peers)
GO_PEER := $(PEERS)/go-controller-runtime
TOOLS_BIN := $(shell hack/tools/build.sh --print-dir)
KUBECTL = $(TOOLS_BIN)/kubectl --kubeconfig=$(CURDIR)/.cluster/kubeconfig \
	--cache-dir=$(CURDIR)/.cluster/kube-cache
HELM = HELM_PLUGINS=$(TOOLS_BIN)/../helm-plugins $(TOOLS_BIN)/helm
CHART := charts/echo-operator
# A parent chart with the chart as a subchart (its `global` and dependency condition included).
UMBRELLA := test/chart/umbrella
# A hung test fails after 5 minutes instead of holding CI until its own timeout.
TEST_FLAGS ?= --test-reporter=spec --test-timeout=300000
UNIT_TESTS := test/unit/**/*.test.ts
INTEGRATION_TESTS := test/integration/**/*.test.ts
FAULT_TESTS := test/faults/**/*.test.ts
E2E_TESTS := test/e2e/**/*.test.ts
# The benchmark harness at N=20 and the memory gate: so neither can rot.
BENCH_TESTS := test/bench/*.test.ts
# The older and newer Kubernetes releases supported beside the default (hack/tools/versions.env),
# and what runs against each: the operator, its conditions (reasons that changed in 1.36), the
# informers' start (WatchList, or pages where the server refuses it), kubeconfigs, the chart.
KUBERNETES_COMPAT_VERSIONS := $(shell source hack/tools/versions.env && echo "$$KUBERNETES_COMPAT_VERSIONS")
COMPAT_TESTS := test/integration/operator.test.ts test/integration/conditions.test.ts \
	test/integration/watch-list.test.ts test/integration/kubeconfig.test.ts test/e2e/chart.test.ts

##@ Setup

.PHONY: setup
setup: ## Install what `make run` needs: npm packages (Node 24 included), the control plane
	@# npm waits on the network, the Go builds on the CPU: side by side, a cold setup is shorter.
	@$(MAKE) --no-print-directory -j2 $(NODE_DEPS) cluster-tools

$(NODE_DEPS): package.json package-lock.json
	npm ci --no-audit --no-fund
	@node --version | grep -q '^v24\.' || { echo "node_modules/.bin/node is not Node 24" >&2; exit 1; }
	@touch $@

.PHONY: cluster-tools
cluster-tools: ## Build the control plane from Go modules (cached): etcd, kube-*, kubectl, kwok
	hack/tools/build.sh cluster >/dev/null

.PHONY: tools
tools: ## Build every tool from Go modules (cached): the control plane, helm, helm-unittest, promtool, jaeger, crane, cosign
	hack/tools/build.sh >/dev/null

##@ Development

.PHONY: run
ifeq ($(CLUSTER),current)
run: $(NODE_DEPS) ## Run the operator from source: on a local control plane (started if needed), or CLUSTER=current on your kubeconfig's context
	node hack/cluster/current.ts
	node src/main.ts $(RUN_FLAGS)
else ifeq ($(CLUSTER),local)
run: setup cluster-up
	$(KUBECTL) apply --server-side -f charts/echo-operator/files/crds/
	@echo "operator starting; in another shell: source .cluster/env; kubectl apply -f examples/echo.yaml; kubectl get echo"
	node src/main.ts --kubeconfig=$(CURDIR)/.cluster/kubeconfig $(RUN_FLAGS)
else
run:
	@echo "CLUSTER=$(CLUSTER): use CLUSTER=local (the default: a control plane in .cluster/) or CLUSTER=current (your kubeconfig's current context)" >&2; exit 2
endif

.PHONY: cluster-up
cluster-up: setup ## Start the local control plane in .cluster/ and print its kubeconfig
	node hack/cluster/cli.ts up

.PHONY: cluster-down
cluster-down: $(NODE_DEPS) ## Stop the local control plane and remove .cluster/
	node hack/cluster/cli.ts down

.PHONY: cluster-status
cluster-status: $(NODE_DEPS) ## Say whether the local control plane is running
	node hack/cluster/cli.ts status

.PHONY: build
build: $(NODE_DEPS) ## Compile src/ to JavaScript in dist/operator/ (the production form: image, benchmark)
	rm -rf dist/operator
	tsc -p tsconfig.build.json
	cp package.json dist/operator/

.PHONY: generate
generate: $(NODE_DEPS) ## Regenerate the CRD manifest from src/echo/crd.ts
	node hack/generate.ts

.PHONY: fmt
fmt: $(NODE_DEPS) ## Format the sources in place
	prettier --write --log-level=warn .

.PHONY: lint
lint: $(NODE_DEPS) ## Type check, lint and check formatting
	tsc -p tsconfig.json
	eslint --max-warnings=0 .
	prettier --check --log-level=warn .
	for script in hack/tools/build.sh hack/image/build.sh hack/release/release.sh .ci/run; do bash -n "$$script"; done

##@ Tests

.PHONY: test
test: setup tools lint test-chart build ## Every suite: lint, chart, unit, integration, faults, e2e, the benchmark's smoke run, then the compatibility suite
	node --test $(TEST_FLAGS) --test-global-setup=test/support/global-setup.ts \
		"$(UNIT_TESTS)" "$(INTEGRATION_TESTS)" "$(FAULT_TESTS)" "$(E2E_TESTS)" "$(BENCH_TESTS)"
	@$(MAKE) --no-print-directory test-compat

.PHONY: test-compat
test-compat: setup tools ## The compatibility suite on each of KUBERNETES_COMPAT_VERSIONS (oldest and newest supported), one cluster each
	@for version in $(KUBERNETES_COMPAT_VERSIONS); do \
		echo "== Kubernetes $$version: $(COMPAT_TESTS)"; \
		ECHO_KUBERNETES_VERSION=$$version node --test $(TEST_FLAGS) \
			--test-global-setup=test/support/global-setup.ts $(COMPAT_TESTS) || exit 1; \
	done

.PHONY: test-chart
test-chart: setup tools ## The chart: helm lint with defaults and with every value set, helm-unittest suites, as a subchart
	$(HELM) lint --strict --quiet $(CHART)
	$(HELM) lint --strict --quiet $(CHART) --values $(CHART)/tests/values/all.yaml
	$(HELM) unittest --color=false $(CHART)
	$(HELM) dependency build $(UMBRELLA) >/dev/null
	$(HELM) lint --strict --quiet $(UMBRELLA)
	$(HELM) template platform $(UMBRELLA) --namespace platform >/dev/null

.PHONY: test-unit
test-unit: $(NODE_DEPS) ## Unit tests: pure logic, no server
	node --test $(TEST_FLAGS) "$(UNIT_TESTS)"

.PHONY: test-integration
test-integration: setup tools ## Integration tests against a local control plane started for the run
	node --test $(TEST_FLAGS) --test-global-setup=test/support/global-setup.ts "$(INTEGRATION_TESTS)"

.PHONY: test-faults
test-faults: setup tools ## Faults injected into real control planes: API server, etcd, the operator process
	node --test $(TEST_FLAGS) --test-global-setup=test/support/global-setup.ts "$(FAULT_TESTS)"

.PHONY: test-e2e
test-e2e: setup tools ## End-to-end tests through the Helm chart on a local control plane
	node --test $(TEST_FLAGS) --test-global-setup=test/support/global-setup.ts "$(E2E_TESTS)"

##@ Packaging

.PHONY: image
image: setup tools ## Build the container image into dist/image without a daemon, then check it (root: chroot)
	hack/image/build.sh
	hack/image/build.sh --verify

.PHONY: release
release: setup tools ## Build release VERSION=x.y.z into dist/release/VERSION: image (OCI archive), SBOM, chart, SHA256SUMS signed with COSIGN_KEY
	COSIGN_KEY="$(COSIGN_KEY)" hack/release/release.sh build "$(VERSION)" \
		$(if $(CHART_DIR),--chart "$(CHART_DIR)") $(if $(IMAGE_FROM),--image "$(IMAGE_FROM)")

.PHONY: release-push
release-push: setup tools ## Push dist/release/VERSION's image and chart to REGISTRY and sign them with COSIGN_KEY
	COSIGN_KEY="$(COSIGN_KEY)" hack/release/release.sh push "dist/release/$(VERSION)" "$(REGISTRY)"

##@ Performance

.PHONY: bench
bench: setup tools build ## Benchmark our operator (BENCH_FLAGS="--n 5000"; node bench/cli.ts --help lists them)
	node bench/cli.ts $(BENCH_FLAGS)

# The Go controller-runtime operator that ours is measured against, built as its README says.
dist/go-peer: $(wildcard $(GO_PEER)/*.go $(GO_PEER)/go.mod $(GO_PEER)/go.sum)
	@test -f $(GO_PEER)/go.mod || { echo "no Go peer in $(GO_PEER): set PEERS=<dir with go-controller-runtime/>" >&2; exit 1; }
	CGO_ENABLED=0 go build -C $(GO_PEER) -o $(CURDIR)/dist/go-peer .

.PHONY: bench-compare
bench-compare: setup tools build dist/go-peer ## Ours against the Go controller-runtime peer, 3 interleaved runs each: medians and ratios (BENCH_FLAGS="--n 300 --repeat 5")
	node bench/cli.ts --compare 'go=$(CURDIR)/dist/go-peer --concurrency 16' $(BENCH_FLAGS)

.PHONY: bench-memory
bench-memory: setup tools ## Fail if heap per cached object grew >10% over bench/memory-baseline.json
	node --test $(TEST_FLAGS) --test-global-setup=test/support/global-setup.ts test/bench/memory-gate.test.ts

##@ Housekeeping

.PHONY: clean
clean: ## Stop the local cluster and remove node_modules (the tool cache outside the tree stays)
	-[ -d node_modules ] && node hack/cluster/cli.ts down
	rm -rf node_modules .cluster coverage dist

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^##@/ {printf "\n%s\n", substr($$0, 5)} \
		/^[a-zA-Z0-9_-]+:.*##/ {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
