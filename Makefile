# `make demo` and `make test` each build .venv first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv

# --compile-bytecode: uv writes no .pyc files by default, and then every fresh
# process compiles numpy, numba and scipy from source again (~1.2 s of a first fit).
$(VENV)/.demo: $(BIN)/uv pyproject.toml
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[sklearn,cli]'
	touch $@

$(VENV)/.test: $(BIN)/uv pyproject.toml
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test]'
	touch $@

# Trains on scikit-learn's bundled digits with the `fastmlp` command (a plot and a
# model file), then times fastmlp against its NumPy twin.
demo: $(VENV)/.demo
	$(BIN)/fastmlp train digits --hidden 128 --epochs 30 --lr 0.003 --val-fraction 0.25 \
		--plot digits-curve.png --out digits.fmlp
	$(BIN)/python -m fastmlp.demo

# A fresh numba cache per run: numba does not recompile a cached kernel when a
# helper it calls from another file changes.
test: $(VENV)/.test
	NUMBA_CACHE_DIR=$$(mktemp -d) $(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.demo
	$(BIN)/python -m fastmlp.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
