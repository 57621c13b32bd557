# Everything a developer or CI needs, from a fresh clone, with only Python >= 3.11 and make.
# Each target creates .venv and installs the project (with its dev extras) first when needed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: all run test lint unit bench clean distclean help

all: help

help:
	@echo "make run    - start switchd with demo data on embedded PostgreSQL (data under var/)"
	@echo "make test   - lint + the whole test suite"
	@echo "make lint   - ruff, mypy, import-linter contracts"
	@echo "make bench  - run the benchmarks under bench/"
	@echo "make clean  - remove caches and var/ (keeps .venv); make distclean also removes .venv"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required; set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m simulators.launcher $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: $(STAMP)
	$(VENV)/bin/pytest -q $(ARGS)

test: lint unit

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache build *.egg-info
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
