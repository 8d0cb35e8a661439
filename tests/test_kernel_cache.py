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
