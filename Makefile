# Small Batch. `make run` serves the demo shop; `make test` runs the whole test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SHOP_ENV ?= development

.PHONY: run test setup migrate demo demo-reset lint format bench lock clean

# requirements*.txt are full locks with hashes (made by `make lock` from requirements*.in), so
# every install is the same set of files, checked byte for byte.
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	@touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(BIN)/flask --app wsgi db upgrade

demo: migrate
	$(BIN)/flask --app wsgi shop demo

## The demo as it first was: every row deleted and the demo loaded again; .venv is kept
demo-reset: migrate
	$(BIN)/flask --app wsgi shop demo --reset

## The first command: install, migrate, load the demo and serve on http://127.0.0.1:5000
run: demo
	$(BIN)/flask --app wsgi shop serve --host 127.0.0.1 --port 5000

## The second command: install and run every test (SQLite, PostgreSQL, concurrency, Chromium)
test: setup
	SHOP_ENV=testing $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	SHOP_ENV=testing $(BIN)/python bench/flash_crowd.py

## After editing requirements.in or requirements-dev.in: compile both locks with hashes again
LOCK := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links
lock: setup
	$(LOCK) --output-file requirements.txt requirements.in
	$(LOCK) --output-file requirements-dev.txt requirements-dev.in

clean:
	rm -rf $(VENV) instance artifacts .pytest_cache .ruff_cache
