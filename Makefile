# The README's two commands: `make up` runs the stack on its embedded defaults,
# `make test` runs the whole test suite. Both set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export FACEREC_DATA_DIR ?= $(CURDIR)/var

.PHONY: install models tools up test lint screenshots bench bench-load gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,pth]'
	touch $@

install: $(VENV)/.installed

models: install
	$(BIN)/facerec models fetch
	$(BIN)/facerec triton-env

up: models
	$(BIN)/facerec up

# Debian's packages the tests use: promtool (prometheus) for the monitoring tests, chromium
# for the web app's browser tests (Playwright's own browser download is not used). Needs root.
TOOL_PACKAGES := $(if $(shell command -v promtool),,prometheus) $(if $(wildcard /usr/bin/chromium),,chromium)
tools:
	@[ -z "$(strip $(TOOL_PACKAGES))" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TOOL_PACKAGES); \
	  else echo "missing: $(TOOL_PACKAGES); install these Debian packages for the monitoring and browser tests"; fi; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: models tools lint
	$(BIN)/pytest

# The README's pictures of every page of the web app, at desktop and phone width, taken by the
# browser test that checks them (a real stack, Debian's chromium).
screenshots: models tools
	FACEREC_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/pytest -p no:cacheprovider -q tests/web/test_every_page.py

bench: models
	$(BIN)/facerec bench embedder

# The load report (about 16 min): stack vs naive baseline vs batching off, as ratios to the ceiling.
bench-load: models
	$(BIN)/python -m loadtests.report --name full

# On a machine with an NVIDIA GPU (not this one): checks what it needs and says what is
# missing, then serves the GPU repository and writes loadtests/results/gpu-<time>/report.md.
# Options through GPU_CHECK, e.g. GPU_CHECK='--serve triton --steps drift,perf'.
gpu-check: install
	$(BIN)/facerec models fetch
	$(BIN)/python -m loadtests.gpu_check $(GPU_CHECK)

clean:
	rm -rf $(VENV) var
