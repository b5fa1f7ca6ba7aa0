# The two commands of the README. Everything else is in pyproject.toml.
VENV ?= .venv
# The distribution's python3 if it will do (it runs clickloop ~20% faster than pyenv's build).
PYTHON ?= $(shell sh tools/pick-python)

.PHONY: run test lint bench

run: $(VENV)/.installed
	$(VENV)/bin/clickloop init --demo
	$(VENV)/bin/clickloop serve

# One test process per core: most of the suite waits on servers, browsers and databases.
test: $(VENV)/.test-installed lint
	$(VENV)/bin/pytest -n auto

# The bench scripts have no .py suffix: ruff is given them by name.
BENCH_SCRIPTS := $(shell grep -l '^\#!.*python' bench/*)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench tools $(BENCH_SCRIPTS)
	$(VENV)/bin/ruff format --check src tests bench tools $(BENCH_SCRIPTS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The report benchmark's extras (numpy, DuckDB); the benches themselves: docs/reports.md.
bench: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[bench]"

# `make run` installs the runtime only; `make test` adds the test tools.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@
