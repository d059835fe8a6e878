.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the project with its dev tools

.PHONY: format
format: $(STAMP) ## rewrite the code in the house format
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: lint
lint: $(STAMP) ## ruff (format and rules)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

.PHONY: arch
arch: $(STAMP) ## the import graph of exporter/'s packages, and the layering contracts it keeps
	$(BIN)/python tools/import_graph.py
	$(BIN)/lint-imports

.PHONY: mypy
mypy: $(STAMP) ## mypy --strict on exporter/, handlers/ and bench/
	$(BIN)/mypy

.PHONY: test
test: lint mypy arch ## lint, type-check, check the layers and run every tier: unit, integration, e2e
	$(BIN)/pytest -q $(PYTEST_ARGS)

.PHONY: fidelity
fidelity: $(STAMP) ## xlsx exports of 100,000 and 1,100,000 rows read back by openpyxl, calamine and LibreOffice
	$(BIN)/pytest -q --fidelity tests/integration/test_xlsx_fidelity.py $(PYTEST_ARGS)

.PHONY: unit
unit: $(STAMP) ## the unit tests alone: no server, a few seconds
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

.PHONY: migrate
migrate: $(STAMP) ## apply migrations to DATABASE_URL
	$(BIN)/exporter migrate

.PHONY: seed
seed: $(STAMP) ## demo roles, accounts and admin in DATABASE_URL
	$(BIN)/exporter seed

.PHONY: run
run: $(STAMP) ## migrate, seed, start API + worker (EMBEDDED=1 forces embedded servers; S3=1 keeps files in a SeaweedFS)
	$(BIN)/exporter dev $(if $(EMBEDDED),--embedded) $(if $(S3),--s3)

ROWS ?= 1000000

.PHONY: bench
bench: $(STAMP) ## ceilings, exports (xlsx in 1 and N processes, rows by PostgreSQL and xlsxwriter, time split), concurrency, API load, imports (ROWS=1000000)
	$(BIN)/python -m bench.run --rows $(ROWS)

.PHONY: bench-xlsx
bench-xlsx: $(STAMP) ## large xlsx alone: rows by PostgreSQL vs xlsxwriter, vs csv, time split (ROWS=1000000)
	$(BIN)/python -m bench.run --only xlsx --rows $(ROWS)

.PHONY: bench-api
bench-api: $(STAMP) ## the API load tests of make bench alone (about a minute)
	$(BIN)/python -m bench.run --only api

.PHONY: bench-imports
bench-imports: $(STAMP) ## the imports of make bench alone: csv, xlsx, xlsb against COPY (ROWS=1000000)
	$(BIN)/python -m bench.run --only imports --rows $(ROWS)

.PHONY: bench-storage
bench-storage: $(STAMP) ## exports to S3 (SeaweedFS) against a local directory, and downloads (ROWS=1000000)
	$(BIN)/python -m bench.run --only storage --rows $(ROWS)

.PHONY: clean
clean: ## remove caches and local state (keeps .venv)
	rm -rf .mypy_cache .ruff_cache .pytest_cache var test-artifacts
