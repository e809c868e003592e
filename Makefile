# Every target sets up .venv itself, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SRC := mmate_gen runtime/mmate generated
# Node tools the tests use (the official AsyncAPI parser), installed locally into .tools/.
TOOLS := .tools
ASYNCAPI_PARSER := @asyncapi/parser@3.6.6
TOOLS_STAMP := $(TOOLS)/.installed-$(subst /,_,$(ASYNCAPI_PARSER))

.PHONY: setup tools generate demo check test test-fast lint format typecheck drift pytest bench docs-topology docs docs-check docs-serve test-cluster

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(STAMP)

setup: $(STAMP)

$(TOOLS_STAMP):
	npm install --prefix $(TOOLS) --no-audit --no-fund --ignore-scripts --loglevel=error $(ASYNCAPI_PARSER)
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

generate: setup
	$(BIN)/mmate-gen build specs/ --out generated/

docs-topology: setup
	$(BIN)/mmate-gen export mermaid specs/ --format markdown --out docs/topology.md

# The documentation site (mkdocs.yml, pages in docs/) into site/; docs-check fails on any warning:
# a broken link or anchor, a nav entry without its page, a page missing from the nav.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --quiet

docs-check: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/docs-check-site

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

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

pytest: setup tools
	$(BIN)/pytest -q -m "not cluster"

# Starts its own 3-node RabbitMQ cluster beside the machine's broker (ports 5701-5703); minutes.
test-cluster: setup
	$(BIN)/pytest -q -m cluster tests/cluster

check: lint typecheck drift docs-check pytest

# The quick loop while developing: everything that needs no broker (generator, diff, exports, type
# tests, the in-memory broker, packaging), after format, lint, types and drift.
FAST_TESTS := tests/gen tests/diff tests/export tests/typing tests/memory tests/runtime/test_packaging.py \
	tests/runtime/test_codec.py tests/runtime/test_layout.py tests/runtime/test_hostile_fuzz.py \
	tests/runtime/test_compression.py
test-fast: lint typecheck drift tools
	$(BIN)/pytest -q -m "not broker" $(FAST_TESTS)

test: check

bench: setup
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/overhead.py
