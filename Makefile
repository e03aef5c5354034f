# make demo: bootstrap, then the whole lifecycle on local servers, told as it runs (scripts/demo).
# make playground: the same, then `dagster dev` on the demo's ledger until Ctrl-C.
# make test: bootstrap (with the Debian test servers), the layer contract, then the test suite.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo playground test lint bench bootstrap clean lock

# pytest runs in parallel (pytest-xdist, docs/testing.md "Parallel runs"): each worker starts its own
# servers. PYTEST_WORKERS=0 runs in one process; PYTEST_ARGS adds options (e.g. -k, -x).
PYTEST_WORKERS ?= 3

bootstrap:
	./scripts/bootstrap

demo: bootstrap
	./scripts/demo

playground: bootstrap
	./scripts/playground

test:
	./scripts/bootstrap --test-deps
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check railiance_ledger tests assets sensors bench tools definitions.py
	$(VENV)/bin/ruff check railiance_ledger assets sensors tools definitions.py
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check railiance_ledger tests assets sensors bench
	$(VENV)/bin/mypy

bench: bootstrap
	$(VENV)/bin/python bench/ledger.py

# requirements-dev.lock: the exact versions bootstrap installs, resolved by uv from pyproject.toml.
# Run after changing a dependency in pyproject.toml and commit both files.
lock:
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements-dev.lock

clean:
	rm -rf $(VENV) artifacts .pytest_cache
