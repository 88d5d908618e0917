# Sluice. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

KUBE_VERSION ?= 1.37.0
ENVTEST_DIR  ?= $(CURDIR)/bin/k8s/$(KUBE_VERSION)
# envtest, `make run` and `make demo` find kube-apiserver and etcd here.
export KUBEBUILDER_ASSETS := $(ENVTEST_DIR)
KUBECTL      ?= $(ENVTEST_DIR)/kubectl

# Pinned tools run from go.mod `tool` directives: one version for everyone.
CONTROLLER_GEN := go tool controller-gen
KUSTOMIZE      := go tool -modfile=hack/tools/go.mod kustomize
GOLANGCI_LINT  := go tool -modfile=hack/tools/go.mod golangci-lint

IMG       ?= sluice/manager:dev
AGENT_IMG ?= sluice/agent:dev
# Packages tested with the race detector; the envtest suites are included.
TEST_FLAGS ?= -race -count=1
FUZZTIME   ?= 30s

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage:\n  make \033[36m<target>\033[0m\n"} \
		/^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} \
		/^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs, RBAC and webhook configuration into config/
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." \
		output:crd:artifacts:config=config/crd/bases \
		output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook

.PHONY: generate
generate: generate-bpf ## Generate deepcopy code for the API types and the BPF objects
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

.PHONY: generate-bpf
generate-bpf: ## Compile bpf/ into internal/datapath with bpf2go (clang-19 -O2 -g -Wall -Werror, pinned in gen.go)
	go generate ./internal/datapath/

.PHONY: fmt
fmt: ## go fmt
	go fmt ./...

.PHONY: vet
vet: ## go vet
	go vet ./...

# The work tree's state: tracked changes and the list of untracked files.
# verify compares it before and after regenerating, so it checks the whole
# tree (a generator writing somewhere new is caught too) while edits that
# were there before it ran don't fail it.
TREE_STATE := { git diff HEAD --binary; git status --porcelain --untracked-files=all; } | sha256sum

.PHONY: verify
verify: ## Regenerate everything (controller-gen, bpf2go, go mod tidy) and fail if that changed any file
	@before=$$($(TREE_STATE)); \
	$(MAKE) --no-print-directory manifests generate; \
	go mod tidy; \
	(cd hack/tools && go mod tidy); \
	if [ "$$($(TREE_STATE))" != "$$before" ]; then \
		echo "verify: regenerating changed the tree; run 'make manifests generate && go mod tidy' and commit:"; \
		git status --porcelain; git --no-pager diff --stat; exit 1; fi
	@echo "verify: generated files are current"

.PHONY: lint
lint: shellcheck ## Run golangci-lint (pinned in hack/tools/go.mod) and shellcheck
	$(GOLANGCI_LINT) run ./...

.PHONY: shellcheck
shellcheck: ## Check the shell scripts (hack/*.sh, .ci/run) with shellcheck
	@command -v shellcheck >/dev/null || { echo "shellcheck: not installed (apt-get install shellcheck)"; exit 1; }
	shellcheck hack/*.sh .ci/run

.PHONY: setup-envtest
setup-envtest: ## Build kube-apiserver, etcd and kubectl from source into bin/k8s/<version> (once)
	KUBE_VERSION=$(KUBE_VERSION) hack/setup-envtest.sh $(ENVTEST_DIR)

.PHONY: test
test: setup-envtest vet ## Run all tests (envtest, BPF and network-namespace tests need root)
	go test $(TEST_FLAGS) ./...

.PHONY: bench
bench: setup-envtest ## Run benchmarks and print their figures: allocator, compiler, BPF per packet, 1,000 nodes converging, pod-to-pod latency on one node and across two (root)
	go test -run '^$$' -bench . -benchmem ./internal/... ./api/... && \
		go test -run '^$$' -bench Converge -benchtime 1x ./test/bench/ && \
		go test -run '^$$' -bench PodToPodLatency -benchtime 1x ./test/bench/ && \
		go test -run '^$$' -bench CrossNode -benchtime 1x ./test/bench/

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 30s)
	go test ./api/v1alpha1 -run '^$$' -fuzz '^FuzzRoundTripFromV1$$' -fuzztime $(FUZZTIME)
	go test ./api/v1alpha1 -run '^$$' -fuzz '^FuzzRoundTripFromV1alpha1$$' -fuzztime $(FUZZTIME)
	go test ./internal/ipam -run '^$$' -fuzz '^FuzzBlockName$$' -fuzztime $(FUZZTIME)
	go test ./internal/cni -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME)
	go test ./internal/policy -run '^$$' -fuzz '^FuzzCompileMatchesReference$$' -fuzztime $(FUZZTIME)

##@ Run

.PHONY: build
build: ## Build the binaries into bin/
	CGO_ENABLED=0 go build -o bin/ ./cmd/...

.PHONY: run
run: setup-envtest ## Run the operator against a local control plane on loopback until Ctrl-C
	KUBECTL=$(KUBECTL) hack/demo.sh --run

.PHONY: demo
demo: setup-envtest ## Start a local control plane, run the operator, apply the samples and show the result (KEEP=1 leaves it running)
	KUBECTL=$(KUBECTL) KEEP=$(KEEP) hack/demo.sh

##@ Deployment

.PHONY: docker-build
docker-build: ## Build the manager image (needs a Docker engine; set BASE_IMAGE to a distroless static:nonroot image)
	@if [ -z "$(BASE_IMAGE)" ]; then echo "docker-build: set BASE_IMAGE to the distroless static:nonroot image of your registry mirror"; exit 1; fi
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMG) .

.PHONY: deploy
deploy: ## Render config/default with kustomize and apply it to the cluster of the current kubeconfig
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Delete what deploy applied
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -
