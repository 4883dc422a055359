# HealthFund: `make run` serves the site, `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app
export HEALTHFUND_ENV ?= development
PORT ?= 5000
JOBS_EVERY ?= 5
# Two pytest workers (pytest-xdist): the machine has two cores.
PYTEST_ARGS ?= -n 2

.PHONY: run test test-sqlite test-postgres lint venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.requirements: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.requirements-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.requirements $@

venv: $(VENV)/.requirements

# The site on http://127.0.0.1:$(PORT) with the demo data, and the periodic jobs (launch,
# close, tidy up) every $(JOBS_EVERY) s beside it: stopping the server stops the jobs too.
run: $(VENV)/.requirements
	mkdir -p instance
	$(FLASK) db upgrade
	$(FLASK) demo seed
	$(FLASK) jobs run --every $(JOBS_EVERY) & jobs=$$!; \
	trap 'kill $$jobs 2>/dev/null' EXIT INT TERM; \
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

# SQLite always; PostgreSQL too when TEST_DATABASE_URL is set (REQUIRE_POSTGRES=1 makes it mandatory).
test: $(VENV)/.requirements-dev
	$(MAKE) --no-print-directory test-sqlite
	@if [ -n "$$TEST_DATABASE_URL" ]; then $(MAKE) --no-print-directory test-postgres; \
	elif [ "$$REQUIRE_POSTGRES" = "1" ]; then echo "REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set" >&2; exit 1; \
	else echo "TEST_DATABASE_URL not set: PostgreSQL part skipped."; fi

test-sqlite: $(VENV)/.requirements-dev
	env -u TEST_DATABASE_URL $(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(VENV)/.requirements-dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.requirements-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
