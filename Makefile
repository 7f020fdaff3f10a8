# Every target does its own setup: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE ?= .cache/mmselect

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test test-families test-cluster demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not benchmark and not families and not cluster and not processes" --durations=15 $(PYTEST_ARGS)

# The VLM family matrix (about 2.5 minutes on 2 cores): kept out of `make test` to hold it under 10 minutes.
test-families: $(STAMP)
	$(BIN)/python -m pytest -q -m families $(PYTEST_ARGS)

# The Ray engine's tests (a local 2-CPU Ray per module, about 1.5 minutes): kept out of `make test` for the same reason.
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -m cluster $(PYTEST_ARGS)

# Tests that start several Python processes (about 2 minutes on 2 cores: each process imports torch): kept out of
# `make test` for the same reason.
test-processes: $(STAMP)
	$(BIN)/python -m pytest -q -m processes $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/mmselect demo --cache $(CACHE)

bench: $(STAMP)
	$(BIN)/python -m pytest -q -m benchmark $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(CACHE) .pytest_cache .import_linter_cache
