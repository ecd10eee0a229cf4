# segdoctor: every target sets up (or updates) the local virtual environment .venv first.
# Needs only Python 3.11 (or >= 3.10), pip and the package registries.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.segdoctor-installed
EXTRAS ?= torch,jax,nifti,dev
# TensorFlow lives in its own environment: when it is installed, Keras imports it on every model
# save even on the torch backend (seconds of start-up and log noise), so the main one stays without.
TF_VENV  := .venv-tf
TF_STAMP := $(TF_VENV)/.segdoctor-installed
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
# Tests whose subject depends on the Keras backend run once per backend, each in its own process.
BACKEND_TESTS := tests/test_losses.py tests/test_metrics.py tests/test_models.py tests/test_data_augment.py

.PHONY: help install demo test test-fast test-backends test-slow test-browser lint format bench clean

help:
	@echo "make demo          train on the bundled nuclei sample and diagnose it (a few minutes)"
	@echo "make test          lint + the test suite on the torch, jax and tensorflow backends"
	@echo "make bench         benchmarks (slow; results go to benchmarks/RESULTS.md by hand)"
	@echo "make lint          ruff"
	@echo "make test-browser  open a run's report.html in headless Chromium"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

$(TF_STAMP): pyproject.toml
	@test -x $(TF_VENV)/bin/python || $(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TF_VENV)/bin/python -m pip install --quiet -e ".[tensorflow,nifti,dev]"
	@touch $(TF_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/segdoctor demo --out runs/demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples scripts
	$(BIN)/ruff check --fix src tests benchmarks examples scripts

test-fast: $(STAMP)
	KERAS_BACKEND=torch $(PYTEST) -q -m "not slow and not browser"

test-backends: $(STAMP) $(TF_STAMP)
	KERAS_BACKEND=jax $(PYTEST) -q -m "not slow and not browser" $(wildcard $(BACKEND_TESTS))
	KERAS_BACKEND=tensorflow $(TF_VENV)/bin/python -m pytest -p no:cacheprovider -q -m "not slow and not browser" $(wildcard $(BACKEND_TESTS))

test: lint test-fast test-backends

test-slow: $(STAMP)
	KERAS_BACKEND=torch $(PYTEST) -q -m slow

test-browser: $(STAMP)
	bash scripts/install-chromium.sh
	$(BIN)/python -m pip install --quiet "playwright>=1.40"
	KERAS_BACKEND=torch $(PYTEST) -q -m browser

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(TF_VENV) runs .pytest_cache .ruff_cache
