"""What compiles when: a changed kernel source clears numba's cache of the kernels
(numba alone would load a cached function whose helper in another file changed), an
epoch compiles only its output's loss, the small product loops load when first needed (on a
cold start compiled by a helper process meanwhile),
read-only inputs run the kernels writable ones compiled, and the kernels fastmlp calls from
Python have the wrapper that call needs."""
import ast
import importlib
import os
import pathlib
import subprocess
import sys
import types

import numba
import numpy as np
import pytest

import fastmlp
from fastmlp.kernels import checks, network

TRAIN = "import fastmlp, numpy as np; fastmlp.MLP([3, 2]).fit(np.ones((4, 3)), [0, 1, 0, 1], epochs=1)"


def cache_files(folder):
    return [n for n in os.listdir(folder) if n.endswith((".nbi", ".nbc"))]


def test_a_stale_stamp_clears_the_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", TRAIN], env=env, check=True, timeout=300)
    [stamp] = list(tmp_path.rglob("fastmlp-kernels.stamp"))
    folder = stamp.parent
    assert len(cache_files(folder)) > 10
    digest = stamp.read_text()
    subprocess.run([sys.executable, "-c", "import fastmlp"], env=env, check=True, timeout=300)
    assert len(cache_files(folder)) > 10  # same sources: the cache stays
    stamp.write_text("sources of an older version")
    subprocess.run([sys.executable, "-c", "import fastmlp"], env=env, check=True, timeout=300)
    assert cache_files(folder) == []
    assert stamp.read_text() == digest
    subprocess.run([sys.executable, "-c", TRAIN], env=env, check=True, timeout=300)  # compiles again
    assert len(cache_files(folder)) > 10


def compiled_kernels(tmp_path, output, y):
    """The kernels a fresh process compiles to fit a 3-2 model with `output` (their
    cache files, in a cache of its own)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / output))
    fit = (f"import fastmlp, numpy as np; fastmlp.MLP([3, 2], output={output!r}).fit("
           f"np.ones((4, 3)), np.array({y!r}), epochs=1)")
    subprocess.run([sys.executable, "-c", fit], env=env, check=True, timeout=300)
    return {name.split("-")[0] for name in os.listdir(next((tmp_path / output).rglob("*.nbi")).parent)
            if name.endswith(".nbi")}


def test_an_epoch_compiles_only_its_outputs_loss(tmp_path):
    # labels or targets is None (fastmlp/core.py), and numba drops the other loss's code
    softmax = compiled_kernels(tmp_path, "softmax", [0, 1, 0, 1])
    sigmoid = compiled_kernels(tmp_path, "sigmoid", [[0, 1], [1, 0], [1, 1], [0, 0]])
    assert "network.train_epoch" in softmax and "network.train_epoch" in sigmoid
    assert "losses.exp_block" in softmax and "losses.sigmoid_block" not in softmax
    assert "losses.sigmoid_block" in sigmoid and "losses.exp_block" not in sigmoid


def test_the_stamp_covers_which_blas_library_the_products_call(monkeypatch):
    # compiled products call a library by name with 32- or 64-bit integers
    # (kernels/_openblas.py): code compiled for another choice must not load
    from fastmlp.kernels import _cache
    digest = _cache.source_digest()
    monkeypatch.setattr(_cache, "CONFIGURATION", "small:scipy:32 large:scipy:32")
    assert _cache.source_digest() != digest


LOOPS = ("from fastmlp.kernels import _blas; "
         "print(_blas.loops_loaded('float64'), _blas.loops_loaded('float32')); ")
# 64-64-32 at 64 rows: every product has 2**17 multiply-adds or more, none for the loops;
# a prediction for 7 rows has smaller ones. In float32: a float64 product may run in them
# at any size (_config.LOOPS_MAX_B_FLOAT64)
FIT_THEN_PREDICT = (
    "import fastmlp, numpy as np; rng = np.random.default_rng(0); "
    "X = rng.standard_normal((128, 64)); y = rng.integers(0, 32, 128); "
    "m = fastmlp.MLP([64, 64, 32], random_state=0, dtype='float32')"
    ".fit(X, y, epochs=2, batch_size=64); "
    + LOOPS + "np.save({path!r}, m.predict_proba(X[:7])); " + LOOPS)


def test_the_small_product_loops_load_when_a_call_first_needs_them(tmp_path):
    # kernels/_blas.py: the loops are a C callback per dtype, which kernels call through
    # a cell; fastmlp/core.py loads (or compiles) them before a call that may need them
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def run(path):
        code = FIT_THEN_PREDICT.format(path=str(tmp_path / path))
        return subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300,
                              capture_output=True, text=True).stdout.split()

    # a fresh cache: the fit needs no loops and builds none; the prediction compiles
    # the float32 ones only
    assert run("compiled.npy") == ["False", "False", "False", "True"]
    compiled = np.load(tmp_path / "compiled.npy")
    # the oracle: loaded from the cache on import, before any kernel runs. Without the
    # loops, the 7-row prediction's products would run in OpenBLAS, in other last bits
    assert run("loaded_first.npy") == ["False", "True"] * 2
    assert np.array_equal(np.load(tmp_path / "loaded_first.npy"), compiled)

    # their cache lost, they compile again when needed, and give the same bits
    [folder] = {path.parent for path in (tmp_path / "cache").rglob("small_gemm.fortran_sgemm*")}
    for path in folder.glob("small_gemm.fortran_sgemm*"):
        path.unlink()
    assert run("recompiled.npy") == ["False", "False", "False", "True"]
    assert np.array_equal(np.load(tmp_path / "recompiled.npy"), compiled)


# A model that runs both callbacks in float64 (its W of 300 x 128 float64 in the loops,
# its relu layer's weight gradient skipping zeros), fit in a fresh process
HELPER_FIT = """
import sys, numpy as np, fastmlp
from fastmlp.kernels import _blas
if sys.argv[2] == "failing":  # a helper that exits at once, having compiled nothing
    sys.executable = "/bin/false"
rng = np.random.default_rng(0)
X, y = rng.normal(size=(200, 300)), rng.integers(0, 10, 200)
model = fastmlp.MLP([300, 128, 10], dtype=np.float64, random_state=0)
model.fit(X, y, epochs=2, batch_size=64, lr=0.01)
np.save(sys.argv[1], model.params)
print(*(_blas._CALLBACKS["dgemm", kind]._cache_hits for kind in (_blas.LOOPS, _blas.SPARSE)))
"""


def test_a_cold_start_compiles_the_callbacks_in_a_helper_process(tmp_path):
    # fastmlp/core.py: while the epoch compiles here, a helper process compiles the
    # callbacks into numba's cache, and they load from there: one cache hit each. When the
    # helper fails, they compile here (no hit), to the same bits.
    def run(path, helper, cache):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / cache))
        return subprocess.run([sys.executable, "-c", HELPER_FIT, str(tmp_path / path), helper],
                              env=env, check=True, timeout=600, capture_output=True,
                              text=True).stdout.split()

    assert run("helped.npy", "working", "first") == ["1", "1"]
    assert run("unhelped.npy", "failing", "second") == ["0", "0"]
    assert np.array_equal(np.load(tmp_path / "helped.npy"), np.load(tmp_path / "unhelped.npy"))


def fit_predict_and_grad(output, X, y, w):
    model = fastmlp.MLP([5, 4, 3], "relu", output, random_state=0)
    model.fit(X, y, epochs=2, batch_size=8, sample_weight=w)
    loss, grads = model.loss_and_grad(X, y, sample_weight=w)
    return model.params, model.predict_proba(X), loss, grads.flat, model.input_grad(X, y)


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_read_only_inputs_run_the_kernels_writable_ones_compiled(tmp_path, output):
    # fastmlp/_base._read_only: every input reaches the kernels read-only, so a memmap
    # (or joblib's shared arrays) compiles no variant of them (the epoch: ~7-10 s cold)
    kernels = (network.train_epoch, network.predict_outputs, network.loss_and_backward,
               checks.all_finite, checks.all_in_range, checks.finite_within)
    rng = np.random.default_rng(0)
    X, w = rng.standard_normal((40, 5)), rng.random(40)
    y = rng.integers(0, 3, 40) if output == "softmax" else rng.integers(0, 2, (40, 3)).astype(float)
    writable = fit_predict_and_grad(output, X, y, w)
    compiled = [set(kernel.signatures) for kernel in kernels]
    assert X.flags.writeable and y.flags.writeable and w.flags.writeable  # the user's, untouched

    np.save(tmp_path / "X.npy", X)
    X_map = np.load(tmp_path / "X.npy", mmap_mode="r")
    y_read, w_read = y.copy(), w.copy()
    y_read.setflags(write=False)
    w_read.setflags(write=False)
    read_only = fit_predict_and_grad(output, X_map, y_read, w_read)
    assert [set(kernel.signatures) for kernel in kernels] == compiled
    for a, b in zip(writable, read_only):
        assert np.array_equal(a, b)


def test_every_kernel_fastmlp_calls_from_python_has_its_python_wrapper():
    # An inner_jit kernel (kernels/_config.py) has no wrapper to call it from Python, and
    # a call from Python crashes the process: none of fastmlp's Python code may call one.
    called = set()
    for path in pathlib.Path(fastmlp.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {}  # names fastmlp.kernels gives this file
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastmlp.kernels"):
                module = importlib.import_module(node.module)
                imported.update((a.asname or a.name, getattr(module, a.name)) for a in node.names)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            if isinstance(function, ast.Name):
                called.add(imported.get(function.id))
            elif isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
                module = imported.get(function.value.id)
                if isinstance(module, types.ModuleType):
                    called.add(getattr(module, function.attr, None))
    kernels = {f for f in called if isinstance(f, numba.core.registry.CPUDispatcher)}
    assert {network.train_epoch, network.predict_outputs, checks.all_finite} <= kernels
    assert [k.__name__ for k in kernels if k.targetoptions.get("no_cpython_wrapper")] == []
