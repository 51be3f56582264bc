# Two entry points for a fresh machine: `make run` (the app on SQLite with demo data) and
# `make test` (the whole suite). Everything else here serves those two.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
FLASK   = $(BIN)/flask --app surveillance
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run test install install-dev lint migrate demo serve scheduler clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@command -v chromium >/dev/null 2>&1 || sh tests/install-chromium.sh
	@test -d node_modules/axe-core -a -d node_modules/ical.js || npm ci --no-audit --no-fund

migrate:
	$(FLASK) db upgrade

demo: migrate
	$(FLASK) demo load

run: install demo
	@echo "Watchful is at http://$(HOST):$(PORT)/  (Ctrl-C stops it)"
	$(BIN)/gunicorn -c python:surveillance.gunicorn_conf --bind $(HOST):$(PORT) 'surveillance:create_app()'

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# SQLite always; PostgreSQL too when TEST_DATABASE_URL points at one.
test: install-dev lint
	$(BIN)/python -m pytest -n 2
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
	  echo "== again on PostgreSQL ($$TEST_DATABASE_URL)"; \
	  $(BIN)/python -m pytest -n 2; \
	fi

clean:
	rm -rf $(VENV) instance node_modules .pytest_cache .hypothesis test-output
