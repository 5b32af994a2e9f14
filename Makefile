# Two entry points: `make demo` and `make test`. Each creates .venv when missing and
# installs hrpose with its dependencies first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to a CPU-friendly build for the setup step; override for a CUDA build,
# e.g. `make test TORCH='torch>=2.4'`. pyproject itself only asks for torch>=2.4.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: setup test demo lint format bench clean

setup: $(STAMP)

# Runtime dependencies only (what the demo needs) ...
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	touch $(RUN_STAMP)

# ... plus the test, lint and export tools.
$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -n 2 -q

demo: $(RUN_STAMP)
	$(BIN)/hrpose demo

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .ruff_cache
