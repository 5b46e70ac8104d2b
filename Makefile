# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install demo test lint fmt typecheck unit bench clean

help:
	@echo "make demo   - install, then run Warden against the built-in simulators"
	@echo "make test   - install, then lint, type check and run the whole test suite"
	@echo "make bench  - install, then benchmark one full cycle at 1k and 10k workspaces"
	@echo "make fmt    - format the code"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/warden demo

lint: $(STAMP)
	$(BIN)/ruff check daemon tests bench
	$(BIN)/ruff format --check daemon tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

fmt: $(STAMP)
	$(BIN)/ruff check --fix daemon tests bench
	$(BIN)/ruff format daemon tests bench

bench: $(STAMP)
	$(BIN)/python bench/cycle.py

clean:
	rm -rf $(VENV) state .pytest_cache .mypy_cache .ruff_cache
