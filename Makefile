# The two commands a new user needs: `make run` and `make test`. Each does its own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_SDKS := tests/providers/node

.PHONY: run test demo bench setup lint clean reliability redrive schema clusters

$(STAMP): pyproject.toml $(NODE_SDKS)/package-lock.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	@# The browser tests drive Debian's Chromium (Playwright's own browser download is not reachable).
	@test -x /usr/bin/chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	@# promtool (the alert-rule tests) and redis-server (the local Redis Cluster tests), from Debian too.
	@command -v promtool >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus; }
	@command -v redis-server >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }
	@# Provider SDKs published on npm that the provider tests ask (tests/providers/node), into that folder.
	@command -v npm >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }
	npm ci --prefix $(NODE_SDKS) --no-audit --no-fund --loglevel=error
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/run_all.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Moves dead-lettered deliveries back to the deliveries queue (docs/OPERATIONS.md, "Re-driving dead letters").
redrive: $(STAMP)
	$(BIN)/python -m scripts.redrive_dead_letters $(REDRIVE_ARGS)

# Starts its own system on free ports and a fresh prefix; BENCH_QUICK=1 for a short run.
bench: $(STAMP)
	$(BIN)/python -m bench.run

# The fault, fuzz and attack tests alone (they run in `make test` too); figures in build/reliability.json.
reliability: $(STAMP)
	$(BIN)/python -m pytest tests/faults tests/test_security.py tests/test_fuzz_providers.py \
		tests/test_fuzz_receiver.py tests/test_openapi.py -q $(PYTEST_ARGS)

# The cluster tests alone (they run in `make test` too): a 3-node RabbitMQ cluster and a Redis Cluster with
# replicas, started on free ports beside the machine's own servers and removed afterwards.
clusters: $(STAMP)
	$(BIN)/python -m pytest tests/clusters -q $(PYTEST_ARGS)

# openapi.json and the client's types.py, generated from services/status_api/schema.py (--check: stale?).
schema: $(STAMP)
	$(BIN)/python -m services.status_api.schema_gen

# ruff over everything; mypy --strict over the services, the shared package, the client, the bench and the scripts.
lint: $(STAMP)
	$(BIN)/python -m ruff check . && $(BIN)/python -m mypy --strict shared services hookstatus_client bench scripts

clean:
	rm -rf $(VENV) .pytest_cache
