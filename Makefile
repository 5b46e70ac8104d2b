# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := constraints.txt
# The PostgreSQL tests' server: the one at WARDEN_TEST_POSTGRES_URL or on 127.0.0.1:5432,
# else a throwaway cluster where PostgreSQL's server binaries are installed.
WITH_POSTGRES := .ci/pg-throwaway

.PHONY: help install constraints demo test lint fmt typecheck unit chaos bench clean

help:
	@echo "make demo        - install, then run Warden against the built-in simulators"
	@echo "make test        - install, then lint, type check and run the test suite (not chaos)"
	@echo "make chaos       - install, then run the chaos tests (pytest -m chaos)"
	@echo "make bench       - install, then benchmark a cycle at 1k/10k/100k on SQLite and PostgreSQL, due latency, savings"
	@echo "make fmt         - format the code"
	@echo "make constraints - pin the versions installed in .venv into $(CONSTRAINTS)"

# Exact versions from constraints.txt: every install (here, the Dockerfile, CI) is the same.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# After changing a dependency in pyproject.toml: pip install -e '.[dev]', then this.
constraints: $(STAMP)
	@{ echo "# The exact versions every install uses: make install, the Dockerfile and CI run"; \
	  echo "# pip install -c constraints.txt ... (pyproject.toml keeps the ranges Warden supports)."; \
	  echo "# Regenerate after changing a dependency: make constraints (pip freeze of .venv)."; \
	  echo "# tests/test_constraints.py checks that this pins every dependency, direct or not."; \
	  $(BIN)/pip freeze --all --exclude-editable | grep -E '^pip=='; \
	  $(BIN)/pip freeze --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

# Options pass through: make demo DEMO_ARGS="--seconds 20 --state-dir demo-state"
demo: $(STAMP)
	$(BIN)/warden demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check daemon tests bench
	$(BIN)/ruff format --check daemon tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(WITH_POSTGRES) $(BIN)/pytest -q -m "not chaos"

test: lint typecheck unit

# pytest exits 5 when it collects nothing: no chaos test yet is not a failure.
chaos: $(STAMP)
	$(WITH_POSTGRES) $(BIN)/pytest -q -m chaos || [ $$? -eq 5 ]

fmt: $(STAMP)
	$(BIN)/ruff check --fix daemon tests bench
	$(BIN)/ruff format daemon tests bench

# Issue 13's benchmark: the due latency first (its figures feed the goals block), the
# savings report, then one cycle at 1k, 10k and 100k on SQLite and PostgreSQL (the
# server at BENCH_POSTGRES_URL, else WARDEN_TEST_POSTGRES_URL, else 127.0.0.1:5432;
# SQLite only when none answers), ending with the goals. Options pass through:
# make bench BENCH_ARGS="--sizes 1000,10000 --stores sqlite --json bench.json"
BENCH_DUE := $(VENV)/bench-due-latency.json
bench: $(STAMP)
	$(BIN)/python bench/due_latency.py --json $(BENCH_DUE) 10000 100000
	$(BIN)/python bench/savings.py
	$(BIN)/python bench/cycle.py --due-latency $(BENCH_DUE) $(BENCH_ARGS)
	@rm -f $(BENCH_DUE)

clean:
	rm -rf $(VENV) state .pytest_cache .mypy_cache .ruff_cache
