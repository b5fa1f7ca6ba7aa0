# The two commands of the README. Everything else is in pyproject.toml.
VENV ?= .venv
PYTHON ?= python3

.PHONY: run test lint

run: $(VENV)/.installed
	$(VENV)/bin/clickloop init --demo
	$(VENV)/bin/clickloop serve

test: $(VENV)/.installed lint
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/ruff format --check src tests bench tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@
