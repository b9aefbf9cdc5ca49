# The two commands of the README: `make demo` (main job) and `make test` (whole suite).
# Both install what they need: uv (through pip, when missing), then the locked environment.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
export UV_PYTHON_DOWNLOADS := never
UV := uv

.PHONY: demo test lint bench uv

# uv through pip --user; where the system's Python refuses that (PEP 668, "externally
# managed", as Debian's does), into a venv of its own under ~/.local, linked onto PATH.
UV_VENV := $(HOME)/.local/share/customer-sync/uv-venv
uv:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --user --quiet uv 2>/dev/null || \
	  { python3 -m venv "$(UV_VENV)" && "$(UV_VENV)/bin/pip" install --quiet uv && \
	    mkdir -p "$(HOME)/.local/bin" && ln -sf "$(UV_VENV)/bin/uv" "$(HOME)/.local/bin/uv"; }

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
