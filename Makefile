# vault-kms-plugin: build, test and demo targets. Run `make help`.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

GO       ?= go
VERSION  := $(shell cat VERSION 2>/dev/null || echo dev)
PKG      := github.com/vault-kms-plugin/vault-kms-plugin
LDFLAGS  := -s -w -X $(PKG)/src/internal/version.Version=$(VERSION)
PLATFORMS := linux/amd64 linux/arm64

.PHONY: help build build-all image image-push image-oci testbed test e2e e2e-node demo bench faults chart-docs clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

build: ## Build bin/vault-kms-plugin for this machine.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/vault-kms-plugin ./src/cmd/vault-kms-plugin

build-all: ## Cross-build static binaries for every release platform into bin/dist/.
	@for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
	    -o bin/dist/vault-kms-plugin-$$os-$$arch ./src/cmd/vault-kms-plugin; \
	  echo "bin/dist/vault-kms-plugin-$$os-$$arch"; \
	done

# A multi-platform build needs a buildx builder that can hold one (the
# docker-container driver: `docker buildx create --use`). Without an output
# the result stays in the builder's cache, which proves that it builds;
# IMAGE_OUTPUT=--push pushes it, IMAGE_OUTPUT='--output type=oci,dest=bin/image.tar'
# writes an OCI archive. The release workflow builds the same way.
image image-push: IMAGE ?= ghcr.io/vault-kms-plugin/vault-kms-plugin
image image-push: IMAGE_OUTPUT ?=
image: ## Build the image for every release platform with docker buildx, tagged with VERSION.
	docker buildx build --platform $(shell echo $(PLATFORMS) | tr ' ' ,) \
	  -f images/vault-kms-plugin/Dockerfile \
	  --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  -t $(IMAGE):$(VERSION) $(IMAGE_OUTPUT) .

image-push: ## Build the image as `make image` does and push it (docker login first).
	$(MAKE) image IMAGE=$(IMAGE) IMAGE_OUTPUT=--push

# The same image without Docker, for this machine's architecture: an OCI
# archive for `ctr -n k8s.io images import`, named $(IMAGE):$(VERSION).
# src/testbed/ociimage writes it; src/internal/chart/image_test.go checks
# that it agrees with the Dockerfile's final stage.
OCI_DIR ?= bin/image
image-oci: IMAGE ?= ghcr.io/vault-kms-plugin/vault-kms-plugin
image-oci: REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
image-oci: OCI_ARCH ?= $(shell $(GO) env GOARCH)
image-oci: ## Build the image for this machine without Docker: bin/image/vault-kms-plugin-<arch>.oci.tar.
	CGO_ENABLED=0 GOOS=linux GOARCH=$(OCI_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
	  -o $(OCI_DIR)/vault-kms-plugin-linux-$(OCI_ARCH) ./src/cmd/vault-kms-plugin
	$(GO) -C src/testbed/ociimage run . -arch $(OCI_ARCH) \
	  -binary $(abspath $(OCI_DIR))/vault-kms-plugin-linux-$(OCI_ARCH) \
	  -version $(VERSION) -revision $(REVISION) -ref $(IMAGE):$(VERSION) \
	  -out $(abspath $(OCI_DIR))/vault-kms-plugin-$(OCI_ARCH).oci.tar

testbed: ## Build the real Vault used by the tests (cached; rebuilt only when its pin changes).
	scripts/testbed.sh --adopt vault

test: testbed build-all ## Everything CI runs: unit and integration tests against a real Vault, with -race.
	$(GO) vet ./...
	$(GO) test -race ./...
	cd src/testbed/ociimage && $(GO) vet ./... && $(GO) test -race ./...
	cd src/testbed/monitoring && $(GO) vet ./... && $(GO) test -race ./...
	cd src/e2e && $(GO) vet ./... && $(GO) test -race ./encryptionconfig/... ./internal/... ./bench/... && $(GO) test -race -run TestChartContractChecksCatchMistakes ./cluster/...

e2e: ## End to end on a real kube-apiserver + etcd + Vault (builds them on first use).
	scripts/testbed.sh --adopt vault etcd kube-apiserver kubectl kube-controller-manager
	cd src/e2e && $(GO) test -race -count=1 -timeout 20m -v -run '^(TestCluster|TestJWTAuth|TestDemo)$$' ./cluster/... ./demo/...

e2e-node: ## helm install on a real node: kubelet and containerd run the chart's pods, then the static-pod cold boot (root).
	scripts/testbed.sh --adopt vault etcd kube-apiserver kubectl kubelet kube-scheduler kube-controller-manager helm3 helm4
	cd src/e2e && $(GO) test -count=1 -timeout 40m -v -run '^TestNode$$' ./cluster/...

demo: build ## Run the plugin against a real local Vault and kube-apiserver, and show a Secret encrypted in etcd.
	scripts/testbed.sh --adopt vault etcd kube-apiserver kubectl
	cd src/e2e && $(GO) run ./demo -plugin $(CURDIR)/bin/vault-kms-plugin

bench: ## Measure the plugin side by side with Vault itself, and what it costs a kube-apiserver; writes BENCHMARKS.md.
	scripts/testbed.sh --adopt vault etcd kube-apiserver kubectl
	cd src/e2e && $(GO) run ./bench -out $(CURDIR)/BENCHMARKS.md

.PHONY: bench-apiserver
bench-apiserver: ## Only what the plugin costs a kube-apiserver (Secret creates/s, start-up with 10,000 Secrets); writes BENCHMARKS-apiserver.md.
	scripts/testbed.sh --adopt vault etcd kube-apiserver kubectl
	cd src/e2e && $(GO) run ./bench -only apiserver -out $(CURDIR)/BENCHMARKS-apiserver.md

# Each target not met fails the run; the report is written either way.
faults: build ## Inject faults (dead active node, blackholes, cut answers, latency, limits, outages) on real Vault servers; writes docs/reliability.md.
	scripts/testbed.sh --adopt vault
	cd src/e2e && $(GO) test -count=1 -timeout 15m -v ./faults -args -out $(CURDIR)/docs/reliability.md

chart-docs: ## Rewrite the values table of charts/vault-kms-plugin/README.md from values.yaml's `# --` comments.
	$(GO) test -count=1 -run '^TestValuesTableUpToDate$$' ./src/internal/chart -update

clean: ## Remove build outputs (the test-bed cache in ~/.cache is kept).
	rm -rf bin/vault-kms-plugin bin/dist bin/image
