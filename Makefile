# `make demo` and `make test` each build .venv first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv

$(VENV)/.demo: $(BIN)/uv pyproject.toml
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[sklearn]'
	touch $@

$(VENV)/.test: $(BIN)/uv pyproject.toml
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test]'
	touch $@

demo: $(VENV)/.demo
	$(BIN)/python -m fastmlp.demo

# A fresh numba cache per run: numba does not recompile a cached kernel when a
# helper it calls from another file changes.
test: $(VENV)/.test
	NUMBA_CACHE_DIR=$$(mktemp -d) $(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.demo
	$(BIN)/python -m fastmlp.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
