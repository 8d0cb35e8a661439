"""A changed kernel source clears numba's cache of the kernels (numba alone would
load a cached function whose helper in another file changed)."""
import os
import subprocess
import sys

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
