"""Training and prediction speed: fastmlp, its NumPy twin, scikit-learn, PyTorch."""

from .common import DTYPES, WORKLOADS, Benchmark, bench, get_case, skip_unless_bench, warm_trainer

# Epochs whose best time the track_ benchmarks report (after setup's warm-up epoch).
REPEAT = 3


class Epoch(Benchmark):
    """Wall time of one epoch of plain mini-batch SGD, and of predicting the training set."""

    def setup(self, workload, dtype, impl):
        self.trainer = warm_trainer(impl, workload, dtype)
        self.trainer.predict()  # fastmlp compiles its forward kernel on the first call

    def time_epoch(self, workload, dtype, impl):
        self.trainer.epoch()

    def time_predict(self, workload, dtype, impl):
        self.trainer.predict()


class Throughput(Benchmark):
    """Samples/s of the best of a few epochs, and that work's share of the GEMM peak."""

    def setup_cache(self):
        # Measured once per asv run, in the run's thread settings, for both dtypes.
        if bench is None:
            return {}  # setup skips every benchmark of the class
        return {dtype: bench.gemm_peak_gflops(dtype) for dtype in DTYPES}

    def setup(self, peaks, workload, dtype, impl):
        self.case = get_case(workload)
        trainer = warm_trainer(impl, workload, dtype)
        self.samples_per_s = self.case.n / bench.time_epochs(trainer, REPEAT, warm_up=False)

    def track_samples_per_second(self, peaks, workload, dtype, impl):
        return self.samples_per_s

    track_samples_per_second.unit = "samples/s"

    def track_fraction_of_gemm_peak(self, peaks, workload, dtype, impl):
        gflops = bench.flop_per_sample(self.case.layers) * self.samples_per_s / 1e9
        return gflops / peaks[dtype]

    track_fraction_of_gemm_peak.unit = "fraction"


class GemmPeak(Benchmark):
    """The GEMM peak itself (a 2048^3 numpy matmul): tells a slower machine from a slower
    fastmlp."""

    params = DTYPES
    param_names = ("dtype",)

    def setup(self, dtype):
        skip_unless_bench()

    def track_gemm_peak_gflops(self, dtype):
        return bench.gemm_peak_gflops(dtype)

    track_gemm_peak_gflops.unit = "GFLOP/s"


class Speedup(Benchmark):
    """How many times more samples/s fastmlp trains than its NumPy twin."""

    params = (list(WORKLOADS), DTYPES)
    param_names = ("workload", "dtype")

    def setup(self, workload, dtype):
        seconds = {}
        for impl in ("fastmlp", "reference"):
            trainer = warm_trainer(impl, workload, dtype)
            seconds[impl] = bench.time_epochs(trainer, REPEAT, warm_up=False)
        self.speedup = seconds["reference"] / seconds["fastmlp"]

    def track_speedup_vs_reference(self, workload, dtype):
        return self.speedup

    track_speedup_vs_reference.unit = "x"


class FirstFit(Benchmark):
    """Seconds from `import fastmlp` to a model fitted for one epoch, in a fresh process
    with numba's cache warm: what a user's script waits for at start-up."""

    params = (["tiny-b32", "mnist-b128-n6000"], DTYPES)
    param_names = ("workload", "dtype")

    def setup(self, workload, dtype):
        skip_unless_bench()
        reason = bench.unavailable_reason("fastmlp")
        if reason:
            raise NotImplementedError(reason)

    def track_first_fit_seconds(self, workload, dtype):
        return bench.first_fit_seconds(get_case(workload), dtype, "fastmlp")

    track_first_fit_seconds.unit = "seconds"

