# Every target sets up .venv itself, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SRC := mmate_gen runtime/mmate generated

.PHONY: setup generate demo check test lint format typecheck drift pytest bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

generate: setup
	$(BIN)/mmate-gen build specs/ --out generated/

demo: generate
	$(BIN)/python examples/demo.py

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy $(SRC)

drift: setup
	$(BIN)/mmate-gen build specs/ --check

pytest: setup
	$(BIN)/pytest -q

check: lint typecheck drift pytest

test: check

bench: setup
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/overhead.py
