# Nurture — every target sets up what it needs (virtualenv, pinned dependencies, Kafka jars).
# `make run` starts the local stack and the services; `make test` runs the whole suite.
# Where KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set, those servers are used instead.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)

.DEFAULT_GOAL := help
.PHONY: help venv jars tools kube image compose-check up run demo stop clean test test-unit lint typecheck fmt lock chaos soak walk

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

venv: $(STAMP)  ## create .venv with the pinned dependencies (requirements.lock)
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip sync -q --python $(PY) requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

jars:  ## fetch the Kafka broker jars from Maven Central (deploy/local/pom.xml), once
	@$(PYTHON) deploy/local/stack.py jars

image: venv  ## build the image (a Docker engine and a Debian base are set up if missing; BASE_IMAGE=, INDEX_URL= to override)
	$(PY) -m deploy.image build

compose-check: venv jars  ## docker-compose.yml for real with locally built images: the README's first event, down/up keeps topics (~3 min, not in make test)
	$(PY) -m deploy.compose check

tools:  ## fetch helm (built from the Go module proxy), promtool/prometheus and etcd (Debian), once
	@$(PYTHON) deploy/local/tools.py helm promtool prometheus etcd >/dev/null

kube:  ## a real kube-apiserver (+ etcd) in the foreground to try the chart; prints KUBECONFIG (built once, ~5 min)
	@$(PYTHON) deploy/local/kube.py up

up: venv jars  ## start (or reuse) the local Kafka broker and PostgreSQL, create the topics
	@$(PY) deploy/local/run.py --infra-only

run: venv jars  ## the whole stack in the foreground: broker, database, topics, services (Ctrl-C stops)
	@$(PY) deploy/local/run.py

demo: venv jars  ## a simulated population through the real stack, then a funnel report + chart (DEMO_ARGS=--leads 500)
	@$(PY) -m deploy.demo $(DEMO_ARGS)

stop:  ## stop the local broker and database (data kept in .local/)
	@$(PYTHON) deploy/local/stack.py down

clean: stop  ## stop everything and delete local data, jars and the virtualenv
	@$(PYTHON) deploy/local/stack.py clean
	rm -rf .local $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

test: venv jars tools lint  ## lint, then the whole suite against a real broker and database started for the run
	$(PY) -m pytest $(PYTEST_ARGS)

chaos: venv jars  ## the counted fault-injection run on its own broker and database (docs/reliability.md)
	$(PY) -m deploy.chaos $(CHAOS_ARGS)

soak: venv jars  ## the 30-minute endurance run with a fault every 5 minutes (docs/soak.md; SOAK_ARGS=--small)
	$(PY) -m deploy.soak $(SOAK_ARGS)

test-unit: venv  ## unit tests only (no broker, no database)
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

bench: venv jars  ## side-by-side benchmarks (own broker + database unless set) -> bench/results.json, docs/benchmarks.md
	$(PY) -m bench $(BENCH_ARGS)
	$(PY) -m bench.report

walk: venv jars  ## trace one lead id from the ingest POST to the SMTP send: calls, module visits, callbacks (WALK_ARGS=--out walk.json)
	$(PY) -m bench.walk $(WALK_ARGS)

lint: venv  ## ruff + mypy (strict on services/ and schemas/)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

fmt: venv
	$(VENV)/bin/ruff check --fix .

lock: venv  ## re-resolve requirements.lock (dev) and requirements-runtime.lock (the image) from pyproject.toml
	$(UV) pip compile -q pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
	$(UV) pip compile -q pyproject.toml --generate-hashes --python-version 3.11 -c requirements.lock \
	  -o requirements-runtime.lock
