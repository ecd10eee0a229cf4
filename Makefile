# segdoctor: every target sets up (or updates) the local virtual environment .venv first.
# Needs only Python 3.11 (or >= 3.10), pip and the package registries.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.segdoctor-installed
EXTRAS ?= tensorflow,torch,jax,nifti,dev
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
# Tests whose subject depends on the Keras backend run once per backend, each in its own process.
BACKEND_TESTS := tests/test_losses.py tests/test_metrics.py tests/test_models.py tests/test_data_augment.py tests/test_fit_backends.py

.PHONY: help install demo test test-fast test-backends test-slow test-browser lint format bench clean

help:
	@echo "make demo          train on the bundled nuclei sample and diagnose it (a few minutes)"
	@echo "make test          lint + the test suite (torch), backend-specific tests on jax and tensorflow"
	@echo "make bench         benchmarks (slow; results go to benchmarks/RESULTS.md by hand)"
	@echo "make lint          ruff"
	@echo "make test-browser  open a run's report.html in headless Chromium"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

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

test-backends: $(STAMP)
	KERAS_BACKEND=jax $(PYTEST) -q -m "not slow and not browser" $(wildcard $(BACKEND_TESTS))
	KERAS_BACKEND=tensorflow $(PYTEST) -q -m "not slow and not browser" $(wildcard $(BACKEND_TESTS)) tests/test_cli_e2e.py

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
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
