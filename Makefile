# Thin wrappers: the real logic lives in Python (agentops/launcher.py, tests/, bench/).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint typecheck bench chaos stop clean

# uv installs in a fraction of pip's time; it is used when it is on PATH.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if command -v uv >/dev/null; then uv pip install --quiet --python $(BIN)/python -e '.[dev]'; \
	else $(BIN)/pip install -qq --disable-pip-version-check -e '.[dev]'; fi
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m agentops.launcher

# The suite in TEST_WORKERS processes (pytest-xdist), each with its own Postgres and Redis under
# var/test-gw<N>; a module's tests stay in one process (its worker and web server start once).
# The 20 slowest tests are listed at the end, to keep the suite fast.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --durations=20

test: $(STAMP)
	$(BIN)/python -m agentops.testing.browser_deps
	$(BIN)/pytest $(PYTEST_PARALLEL)

# The inner loop: no Chromium and none of the slow process tests (killed workers, outages).
test-fast: $(STAMP)
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not browser and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	DEBUG=1 DATABASE_URL=postgresql://localhost/typecheck REDIS_URL=redis://localhost:6379/0 \
		$(BIN)/mypy agentops tracing tools memory knowledge

bench: $(STAMP)
	$(BIN)/python bench/step_overhead.py
	$(BIN)/python bench/trace_ingest.py
	$(BIN)/python bench/recall.py
	$(BIN)/python bench/concurrency.py
	$(BIN)/python bench/streams.py

chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --kills 200

stop: $(STAMP)
	DEBUG=1 $(BIN)/python manage.py stop_services
	for folder in $(CURDIR)/var/test $(wildcard $(CURDIR)/var/test-gw*); do \
		DEBUG=1 AGENTOPS_VAR_DIR=$$folder $(BIN)/python manage.py stop_services; done

clean: stop
	rm -rf var
