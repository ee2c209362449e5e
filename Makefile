# fnnbench: every target creates .venv when missing and installs the project from its own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test test-fast lint run reproduce report bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,cluster]'
	touch $(STAMP)

venv: $(STAMP)

## the test command (CI runs exactly this): lint, then every test tier
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

## unit tiers only (no slow sweeps), for the edit-test loop
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## first demo: the activation sweep, logged to ./mlflow.db
run: $(STAMP)
	$(PY) -m fnnbench -m activation=relu,tanh,sigmoid

## the main job: every claim sweep on the embedded MLflow store, then the report
reproduce: $(STAMP)
	$(PY) -m fnnbench.reproduce

report: $(STAMP)
	$(PY) -m fnnbench.report

bench: $(STAMP)
	$(PY) -m benchmarks.speed

clean:
	rm -rf outputs multirun mlruns mlartifacts .pytest_cache .ruff_cache
