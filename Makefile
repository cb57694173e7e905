# Developer entry points. `make help` lists them.
SHELL := /bin/bash
UV ?= uv
SYNC_FLAGS := --all-packages --extra azure --extra transformers
PYTEST := $(UV) run --frozen pytest

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

.PHONY: install
install: ## Install uv if missing and sync the whole workspace (CPU extras) from uv.lock
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv
	$(UV) sync $(SYNC_FLAGS) --locked

.PHONY: fmt
fmt: ## Format the code
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

.PHONY: lint
lint: ## Lint Python (ruff), import contracts (import-linter), Dockerfiles (hadolint), charts (helm lint)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen lint-imports
	$(UV) run --frozen hadolint --failure-threshold warning $$(git ls-files 'packages/*/Dockerfile*' 'runtimes/*/Dockerfile*' 'hack/images/*/Dockerfile')
	bash hack/helm-lint.sh

.PHONY: typecheck
typecheck: ## Type-check the packages (pyright)
	$(UV) run --frozen pyright

.PHONY: test-unit
test-unit: ## Unit and integration tests of every package and of the e2e helpers (no cluster)
	$(PYTEST) -m "not e2e and not gpu" packages e2e/tests/unit

.PHONY: e2e
e2e: ## End-to-end tests on the local cluster (builds/reuses it: hack/local-cluster.sh)
	$(PYTEST) -m e2e e2e

.PHONY: release-runtime-envs
release-runtime-envs: ## Delete the runtime images' environments the unit suite built (~9 GB; rebuilt on demand)
	$(UV) run --frozen python runtimes/envs.py release

# The e2e suite's images and nodes need the disk the runtime environments hold: release them
# in between (the next run downloads them again, about a minute on a fast link).
.PHONY: test
test: install test-unit release-runtime-envs e2e ## Everything CI runs: unit, integration and e2e suites

.PHONY: generate
generate: ## Regenerate CRDs and chart schemas from the models
	$(UV) run --frozen python -m kaito_api.crdgen
	cp packages/tuning-job/src/kaito_tuning/templates/lora-params.yaml packages/tuning-job/src/kaito_tuning/templates/qlora-params.yaml charts/kaito-workspace/files/tuning/
	$(UV) run --frozen python hack/gen_values_schema.py charts/kaito-workspace charts/gpu-provisioner
	$(UV) run --frozen python -m kaito_presets.plans_table packages/presets/README.md
	$(UV) run --frozen python hack/gen_server_config_keys.py

.PHONY: verify
verify: generate ## Fail when generated files drift from what is committed, or uv.lock is stale
	git diff --exit-code -- charts packages/presets/README.md packages/presets/src/kaito_presets/server_config_keys.py
	$(UV) lock --check
	$(UV) lock --project runtimes/cu12 --check
	$(UV) lock --project runtimes/vllm-cpu --check

.PHONY: images
images: ## Build every image with buildah (or docker: hack/build-images.sh --builder docker), tags = package versions
	bash hack/build-images.sh

.PHONY: quickstart
quickstart: ## Local cluster with real nodes (fake GPUs), images, both charts as pods, then the Phi-3 quick start on a tiny CPU model
	bash hack/quickstart.sh up

.PHONY: quickstart-down
quickstart-down: ## Stop the local cluster `make quickstart` started (nodes, pods, control plane; state kept)
	bash hack/quickstart.sh down

.PHONY: kind-e2e
kind-e2e: ## Needs Docker: kind cluster, images loaded, fake GPUs, charts installed, e2e suite with real pods
	bash hack/kind-e2e.sh
