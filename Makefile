# One definition of setup, lint, test, run and bench; CI (.ci/run) calls exactly these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint typecheck format bench services services-stop schemas clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/apicat serve --demo --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Starts the local services the tests use (Redis if installed; a Kafka broker fetched with mvn);
# tests that need a service that is still missing skip locally and fail under CI=true.
services:
	@scripts/services.sh start

services-stop:
	@scripts/services.sh stop

test: $(STAMP) lint services
	set -a; [ ! -f .cache/services.env ] || . .cache/services.env; set +a; \
	$(BIN)/python -m pytest $(PYTEST_ARGS)

schemas: $(STAMP)
	$(BIN)/python -m schemas.export

bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || true)
	$(BIN)/python -m bench.run --output docs/BENCHMARKS.md

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
