"""What every benchmark here shares: the parameter grid, trainer set-up, a base class.

The measuring code is `fastmlp.bench`, the module behind `python -m fastmlp.bench`,
so asv and the command time the same models on the same synthetic data. asv imports
this suite before it knows whether the benchmarked commit has `fastmlp.bench`, so the
import is guarded and the grid is spelled out here; a commit without it is skipped.
"""

import importlib.util

try:
    from fastmlp import bench
except ImportError:  # a commit from before fastmlp/bench.py
    bench = None

# asv.conf.json picks the "forkserver" launch method: asv imports this suite once and
# forks a process per benchmark from it. Importing the optional peers here lets every
# fork share them instead of paying for the imports (PyTorch: about 8 s) in its setup.
# Nothing here may run a numba parallel region: a forked child of a process that has
# run one is killed.
if importlib.util.find_spec("sklearn"):
    import sklearn.neural_network  # noqa: F401
if importlib.util.find_spec("torch"):
    import torch

    # PyTorch imports torch._dynamo (about 4 s) when the first optimizer is made
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

# asv name -> (workload label in fastmlp.bench, number of samples or None for its own).
# mnist and deep are subsampled so one epoch of the slowest implementation stays under
# about 1 s and `asv run --quick` finishes in minutes; with dozens of mini-batches an
# epoch's samples/s hardly depends on n. `python -m fastmlp.bench` uses the full sizes.
WORKLOADS = {
    "tiny-b1": ("tiny-b1", None),
    "tiny-b32": ("tiny-b32", None),
    "digits-b32": ("digits-b32", None),
    "mnist-b128-n6000": ("mnist-b128", 6000),
    "wide-b64": ("wide-b64", None),
    "deep-b256-n2560": ("deep-b256", 2560),
}
DTYPES = ["float64", "float32"]
IMPLEMENTATIONS = ["fastmlp", "reference", "sklearn", "torch"]


def get_case(workload):
    name, n = WORKLOADS[workload]
    return bench.get_cases([name], n=n)[0]


def skip_unless_bench():
    # asv reports a benchmark whose setup raises NotImplementedError as skipped
    if bench is None:
        raise NotImplementedError("this commit has no fastmlp.bench")


def warm_trainer(impl, workload, dtype):
    """A trainer that has run one epoch (numba compiled or loaded from its cache,
    scikit-learn's weights initialised); skipped when `impl` cannot run here."""
    skip_unless_bench()
    try:
        trainer = bench.make_trainer(impl, get_case(workload), dtype)
    except bench.Unavailable as e:
        raise NotImplementedError(str(e)) from None
    trainer.epoch()
    return trainer


class Benchmark:
    """Base class, after scikit-learn's asv_benchmarks: settings and the full grid.

    Each asv sample is one or more whole epochs of training; asv picks how many.
    """

    timeout = 300
    params = (list(WORKLOADS), DTYPES, IMPLEMENTATIONS)
    param_names = ("workload", "dtype", "impl")
