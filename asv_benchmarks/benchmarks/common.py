"""What every benchmark here shares: the parameter grid, trainer set-up, a base class.

The measuring code is `fastmlp.bench`, the module behind `python -m fastmlp.bench`,
so asv and the command time the same models on the same synthetic data. asv imports
this suite before it knows whether the benchmarked commit has `fastmlp.bench`, so the
grid is spelled out here and a commit without it is skipped.
"""

import importlib.util

import numba  # noqa: F401  (imported once here, for every benchmark's process: ~0.3 s)

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

# fastmlp itself is imported by each benchmark's process (bench(), ~0.1 s), never
# here: it starts numba's threads as it loads, and under numba's omp layer (GNU
# OpenMP, which does not survive fork) a process forked after that runs fastmlp's
# serial kernels only. Imported here, fastmlp would run at one thread in every
# benchmark while NumPy and PyTorch used the run's threads (measured: mnist 106k
# against 196k samples/s at 2 threads).

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


def bench():
    """fastmlp.bench, imported in the calling benchmark's process (see above). A commit
    from before it raises NotImplementedError, which asv reports as skipped."""
    try:
        from fastmlp import bench as module
    except ImportError:
        raise NotImplementedError("this commit has no fastmlp.bench") from None
    return module


def get_case(workload):
    name, n = WORKLOADS[workload]
    return bench().get_cases([name], n=n)[0]


def warm_trainer(impl, workload, dtype):
    """A trainer that has run one epoch (numba compiled or loaded from its cache,
    scikit-learn's weights initialised); skipped when `impl` cannot run here."""
    module = bench()
    try:
        trainer = module.make_trainer(impl, get_case(workload), dtype)
    except module.Unavailable as e:
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
