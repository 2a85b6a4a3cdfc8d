# vein2vein: `make run` to try it, `make test` to prove it. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000
STAMP := $(VENV)/.installed-stamp

.PHONY: help install run migrate demo test test-unit fuzz lint fmt check-migrations bench clean tools

# the optional tools a newcomer may lack (make tools says what needs them and how to get them)
CHROMIUM ?= chromium
PDFTOTEXT ?= pdftotext

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "vein2vein needs Python 3.11 or newer (set PYTHON=python3.11)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# axe-core (npm) checks every page's accessibility in the browser tests; without npm those
	@# checks are listed under NOT RUN
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/axe axe-core@4 >/dev/null 2>&1 \
	  || echo "npm could not install axe-core: the accessibility checks will not run"; fi
	@# oidc-provider (npm) is the real OpenID provider the single sign-on tests start with node;
	@# without it those tests are listed under NOT RUN
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/oidc oidc-provider@9 >/dev/null 2>&1 \
	  || echo "npm could not install oidc-provider: the single sign-on tests will not run"; fi
	@touch $(STAMP)

install: $(STAMP) ## create the virtualenv and install vein2vein with its dev tools

migrate: install ## migrate the database (DATABASE_URL, default var/vein2vein.db)
	$(BIN)/vein2vein db upgrade

demo: migrate ## load the demo data and print the demo logins
	$(BIN)/vein2vein demo

tools: ## say which optional tools are missing, what needs them, and how to install them
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
	  echo "Not installed: chromium. The pages work in any browser you already have; the browser tests"; \
	  echo "  (tests/browser: each role's day in a real browser, screenshots, accessibility) need it."; \
	  echo "  Install it with:  sudo apt-get install chromium"; }
	@command -v $(PDFTOTEXT) >/dev/null 2>&1 || { \
	  echo "Not installed: poppler-utils. The chain-of-custody report (PDF) opens in any PDF viewer;"; \
	  echo "  reading it in a terminal (pdftotext) and the report tests (tests/integration/test_evidence.py) need it."; \
	  echo "  Install it with:  sudo apt-get install poppler-utils"; }

run: migrate ## run web, worker and beat on the embedded default (SQLite + filesystem broker)
	@$(MAKE) --no-print-directory tools
	@mkdir -p var
	@$(BIN)/vein2vein keys init --if-missing
	@$(BIN)/vein2vein demo | tee var/demo-logins.txt
	@echo
	@echo "vein2vein pages:   http://127.0.0.1:$(PORT)/  (sign in with a demo e-mail and the password above)"
	@echo "vein2vein API:     http://127.0.0.1:$(PORT)/api/v1/  (OpenAPI: /api/v1/openapi.json)"
	@echo "Try it:            curl -H 'Authorization: Bearer <token above>' 'http://127.0.0.1:$(PORT)/api/v1/identifiers?text=G123417654321A'"
	@echo "Demo logins saved: var/demo-logins.txt. Ctrl-C stops web, worker and beat."
	@echo "Each request's log line is off: LOG_REQUESTS=1 make run shows them."
	@echo
	@trap 'kill $$(jobs -p) 2>/dev/null; wait' EXIT INT TERM; \
	 $(BIN)/celery -A workers.celery_app worker --concurrency=1 --loglevel=WARNING & \
	 $(BIN)/celery -A workers.celery_app beat --loglevel=WARNING & \
	 $(BIN)/vein2vein run --port $(PORT) & \
	 wait

TEST_WORKERS ?= 3

test: install ## the whole suite: PostgreSQL + Redis (TEST_DATABASE_URL/TEST_REDIS_URL) and embedded
	$(BIN)/pytest -n $(TEST_WORKERS) --durations=15

fuzz: install ## the API fuzzer, long: FUZZ_EXAMPLES (250) per operation, mode and role, new data each run
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-250} FUZZ_RANDOM=1 $(BIN)/pytest tests/fuzz -s -p no:cacheprovider

test-unit: install ## the pure domain only, in a second
	$(BIN)/pytest tests/unit

lint: install ## ruff, formatting, mypy and the import contract
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: install ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check-migrations: install ## fail when the tables and the migrations drift (DATABASE_URL)
	$(BIN)/vein2vein db upgrade
	$(BIN)/vein2vein db check

bench: install ## the benchmarks: scans, labels, notification latency (bench/README.md)
	$(BIN)/python bench/scan_throughput.py
	$(BIN)/python bench/label_rate.py
	$(BIN)/python bench/notification_latency.py
	$(BIN)/python bench/sweep_scale.py
	$(BIN)/python bench/readings_import.py

clean: ## remove the virtualenv, runtime data and caches
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
