# Two entry points for a fresh machine: `make run` (the app on SQLite with demo data) and
# `make test` (the whole suite). Everything else here serves those two.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
FLASK   = $(BIN)/flask --app surveillance
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run test install install-dev lint migrate demo serve scheduler clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@sh tests/install-chromium.sh
	@test -d node_modules/axe-core -a -d node_modules/ical.js || npm ci --no-audit --no-fund

migrate:
	$(FLASK) db upgrade

demo: migrate
	$(FLASK) demo load

# The web server and the scheduler (reminders, daily jobs) side by side; Ctrl-C stops both.
run: install demo
	@echo "Watchful is at http://$(HOST):$(PORT)/ with its scheduler (demo mail: instance/outbox-mail/; Ctrl-C stops both)"
	@$(FLASK) scheduler run & scheduler=$$!; \
	trap 'kill -TERM $$scheduler 2>/dev/null; wait $$scheduler' EXIT INT TERM; \
	$(BIN)/gunicorn -c python:surveillance.gunicorn_conf --bind $(HOST):$(PORT) 'surveillance:create_app()'

serve:
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers 2 --access-logfile - 'surveillance:create_app()'

scheduler:
	$(FLASK) scheduler run

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# SQLite always; PostgreSQL too when TEST_DATABASE_URL points at one.
test: install-dev lint
	@echo "== on SQLite"
	env -u TEST_DATABASE_URL $(BIN)/python -m pytest -n 2
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
	  echo "== again on PostgreSQL ($$TEST_DATABASE_URL)"; \
	  $(BIN)/python -m pytest -n 2; \
	fi

clean:
	rm -rf $(VENV) instance node_modules .pytest_cache .hypothesis test-output

# Every benchmark on both databases (about 25 minutes on 2 cores; needs PostgreSQL on
# 127.0.0.1:5432 and installs wrk from Debian when missing). JSON in /tmp/bench-results.
bench: install-dev
	bash bench/run_all.sh
