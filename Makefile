# The two commands of the README: `make demo` (main job) and `make test` (whole suite).
# Both install what they need: uv (through pip, when missing), then the locked environment.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
export UV_PYTHON_DOWNLOADS := never
UV := uv

.PHONY: demo test lint bench uv

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --user --quiet uv

demo: uv
	$(UV) run --locked customer-sync demo

test: uv
	$(UV) run --locked ruff check .
	$(UV) run --locked pytest

lint: uv
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked mypy customer_sync/schemas customer_sync/transforms

bench: uv
	$(UV) run --locked python scripts/benchmark.py $(BENCH_ARGS)
