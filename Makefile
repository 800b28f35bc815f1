# ytmp3: `make run` starts everything on one machine, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format bench system-deps clean

$(STAMP): pyproject.toml
	infrastructure/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,docker,bench,ui]'
	touch $(STAMP)

## run: start the Prefect server, the deployments of prefect.yaml and the web page
run: $(STAMP)
	$(BIN)/python infrastructure/local.py

## test: lint, then every test (Docker and browser tests skip where their engine is missing)
test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: the benchmarks in bench/, written to docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python -m bench

system-deps:
	infrastructure/install-system-deps.sh

clean:
	rm -rf .run .pytest_cache .ruff_cache
