# The README's two commands: `make up` runs the stack on its embedded defaults,
# `make test` runs the whole test suite. Both set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export FACEREC_DATA_DIR ?= $(CURDIR)/var

.PHONY: install models tools perf-analyzer up test lint screenshots bench bench-load bench-triton gpu-check clean

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
# for the web app's browser tests (Playwright's own browser download is not used), libb64
# for perf_analyzer. Needs root.
TOOL_PACKAGES := $(if $(shell command -v promtool),,prometheus) $(if $(wildcard /usr/bin/chromium),,chromium) \
	$(if $(wildcard /usr/lib/*/libb64.so.0d /lib/*/libb64.so.0d),,libb64-0d)
tools: perf-analyzer
	@[ -z "$(strip $(TOOL_PACKAGES))" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TOOL_PACKAGES); \
	  else echo "missing: $(TOOL_PACKAGES); install these Debian packages for the monitoring, browser and perf_analyzer tests"; fi; }

# NVIDIA's perf_analyzer (`make bench-triton`, its test): the binary in tritonclient's manylinux
# wheel, Triton 24.10's client (the project's own pin is the pure-Python wheel, without it), in
# a venv of its own with the CUDA runtime it links against (no GPU is used); libb64 is above.
PERF_ANALYZER_VENV := $(FACEREC_DATA_DIR)/tools/perf-analyzer
$(PERF_ANALYZER_VENV)/.installed:
	$(PYTHON) -m venv $(PERF_ANALYZER_VENV)
	$(PERF_ANALYZER_VENV)/bin/python -m pip install -q tritonclient==2.51.0 nvidia-cuda-runtime-cu12==12.9.79
	touch $@

perf-analyzer: $(PERF_ANALYZER_VENV)/.installed

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

# Each model through Triton (perf_analyzer, batch-1 requests, 1 to 32 in flight) next to ONNX
# Runtime in process, one single-threaded process per core (about 5 min). Options through
# BENCH_TRITON, e.g. BENCH_TRITON='--concurrency 1,8 --seconds 1'.
bench-triton: models tools
	$(BIN)/python -m loadtests.bench_triton $(BENCH_TRITON)

# On a machine with an NVIDIA GPU (not this one): checks what it needs and says what is
# missing, then serves the GPU repository and writes loadtests/results/gpu-<time>/report.md.
# Options through GPU_CHECK, e.g. GPU_CHECK='--serve triton --steps drift,perf'.
gpu-check: install
	$(BIN)/facerec models fetch
	$(BIN)/python -m loadtests.gpu_check $(GPU_CHECK)

clean:
	rm -rf $(VENV) var
