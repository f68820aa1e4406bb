# Bootstraps everything on a fresh machine: `make run` and `make test` need nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The venv's tools first: DVC stages call `matryoshka`, MLflow serving execs `uvicorn`.
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Offline, no telemetry: the same switches components/runtime.py sets for the CLI.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(CURDIR)/.cache/dvc-site
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: venv run test test-fast lint bench-quality clean

venv: $(STAMP)

# torch first, pinned exactly, so pip takes the local CPU wheel instead of CUDA builds.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/matryoshka run

# Two workers, one test file each at a time (--dist loadfile keeps a file's module fixtures in
# one process): the end-to-end tests mostly wait on subprocesses and servers, so two of them
# share the 2 cores well (measured: 22 min in one process, 9 min in two).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile  # tests/ and the doctests of components/

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check components pipelines tests benchmarks
	$(BIN)/ruff format --check components pipelines tests benchmarks

bench-quality: $(STAMP)
	$(BIN)/python benchmarks/scifact_quality.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
