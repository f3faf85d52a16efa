# Two commands matter on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint format dev sandbox bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	@# Bytecode compiled once at install: where PYTHONDONTWRITEBYTECODE is set, every process (each CLI run and
	@# Dagster process the tests start) would otherwise compile Dagster and its dependencies again, about 2 s each.
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/buw demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# Unit and SQL-model tests only: no sandbox server, no browser, no third-party install.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not integration and not browser and not interop" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint sql

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/sqlfluff fix sql

# The Dagster UI on the sandbox: http://127.0.0.1:3000
dev: $(STAMP)
	$(BIN)/buw dev

sandbox: $(STAMP)
	$(BIN)/buw sandbox --port 4566 --scenario demo

bench: $(STAMP)
	$(BIN)/python bench/sandbox_throughput.py
	$(BIN)/python bench/extract_cost.py
	$(BIN)/python bench/models_scale.py
	$(BIN)/python bench/sql_startup.py
	$(BIN)/python bench/invocation_logs.py

clean:
	rm -rf warehouse/lake warehouse/*.duckdb reports/out .dagster test-artifacts
