"""Shared benchmark plumbing: thread settings, the machine header, interleaved timing.

Timing rules: JIT compilation and warm-up happen before any clock starts;
methods are timed interleaved round by round (so a noisy neighbour hits every
method alike); a round during which other processes took a noticeable share
of the CPUs is discarded (this machine is shared), and figures are medians
over the kept rounds.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np

_LIMITER = None  # threadpoolctl limiter kept alive for the whole run


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(n: int) -> dict:
    """Give torch, Numba and every BLAS/OpenMP pool the same ``n`` threads; return what each got."""
    global _LIMITER
    import numba
    import threadpoolctl
    import torch

    n = max(1, min(int(n), int(numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(n)
    numba.set_num_threads(n)
    _LIMITER = threadpoolctl.threadpool_limits(limits=n)
    return {"torch": torch.get_num_threads(), "numba": numba.get_num_threads(),
            "blas": sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()})}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    from eie_runtime.kernel_calibration import cpu_model as model

    return model()


def machine_header(threads: int) -> dict:
    """CPU, cores, library versions and the BLAS/MKL backend behind each baseline."""
    import numba
    import scipy
    import scipy.sparse  # noqa: F401  (loads scipy's BLAS so threadpoolctl lists it)
    import threadpoolctl
    import torch

    info = threadpoolctl.threadpool_info()
    cuda = None
    if torch.cuda.is_available():
        cuda = {"device": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                "cusparse_via": "torch sparse CSR (cuSPARSE)", "cublas_via": "torch.nn.functional.linear"}
    from eie_runtime import kernel_costs
    from eie_runtime.kernels.jit import compile_target

    costs, costs_source = kernel_costs.current_with_source()  # self-calibrates here, before any timing
    return {
        "cpu": cpu_model(),
        "llvm_cpu": compile_target()[0],
        "kernel_costs_source": costs_source,
        "kernel_costs": costs.to_dict(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "cores_available": available_cores(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numba_threading_layer": _numba_layer(),
        "torch_blas": "MKL" if torch.backends.mkl.is_available() else "none",
        "torch_dense_backend": "oneDNN (mkldnn)" if torch.backends.mkldnn.is_available() else "native",
        "torch_csr_backend": "MKL sparse (torch._C has_mkl=%s)" % torch.backends.mkl.is_available(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy_blas": [f"{p['internal_api']} {p.get('version')} ({p.get('architecture', '?')}, {p['prefix']})"
                       for p in info if p["user_api"] == "blas"],
        "scipy_csr_backend": "scipy.sparse compiled C++ (sparsetools csr_matvec/csr_matvecs), single-threaded",
        "threadpools": [{k: p.get(k) for k in ("user_api", "internal_api", "prefix", "version", "num_threads")}
                        for p in info],
        "env": {k: os.environ[k] for k in sorted(os.environ)
                if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "NUMBA_", "KMP_", "GOMP_"))},
        "cuda": cuda,
    }


def _numba_layer() -> str:
    import numba
    from numba import njit, prange

    @njit(parallel=True)
    def _touch(a):
        for i in prange(a.shape[0]):
            a[i] += 1

    _touch(np.zeros(4))
    return numba.threading_layer()


class CpuMeter:
    """Over an interval: CPU time other processes took (in cores, from /proc/stat) and the
    share of wall time this process's threads sat runnable but waiting for a core
    (their ``run_delay`` in /proc/self/task/*/schedstat)."""

    def __init__(self):
        self.ok = os.path.exists("/proc/stat") and os.path.exists("/proc/self/task")
        self._tick = os.sysconf("SC_CLK_TCK") if self.ok else 100

    def _busy(self) -> float:
        with open("/proc/stat") as f:
            parts = f.readline().split()[1:]
        vals = [int(v) for v in parts]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return (sum(vals[:8]) - idle) / self._tick

    @staticmethod
    def _run_delay() -> dict:
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    out[tid] = int(f.read().split()[1]) / 1e9
            except (OSError, IndexError, ValueError):
                pass
        return out

    def start(self):
        self._t = time.perf_counter()
        self._own = sum(os.times()[:2])
        if self.ok:
            self._sys = self._busy()
            self._delay = self._run_delay()

    def read(self) -> tuple[float, float]:
        """(foreign cores, own waiting share) since :meth:`start`."""
        wall = time.perf_counter() - self._t
        if not self.ok or wall <= 0:
            return 0.0, 0.0
        own = sum(os.times()[:2]) - self._own
        foreign = max(0.0, (self._busy() - self._sys - own) / wall)
        now = self._run_delay()
        waited = sum(v - self._delay.get(t, 0.0) for t, v in now.items())
        return foreign, max(0.0, waited / wall)

    def foreign_cores(self) -> float:
        return self.read()[0]


@dataclass
class Timing:
    samples_us: list = field(default_factory=list)  # per-call time of each kept round
    calls_per_round: int = 1

    @property
    def median_us(self) -> float:
        return float(np.median(self.samples_us))

    @property
    def min_us(self) -> float:
        return float(np.min(self.samples_us))

    @property
    def repeats(self) -> int:
        return len(self.samples_us) * self.calls_per_round


def calls_for(fn, target_s: float, warm_s: float = 0.02) -> int:
    """How many back-to-back calls of ``fn`` last about ``target_s``, from the fastest of three calls
    taken after at least ``warm_s`` (and three calls) of warming up.

    The first calls after an idle spell can take milliseconds while a thread pool (or the VM's
    second vCPU) wakes: seen here, a 40 us kernel took 0.5-8 ms. Sized by such calls, a method got
    4-13 calls per round instead of hundreds, and one wake-up within a round then lifted that round's
    mean 2x (a 100 us median for a 50 us NT-LSTM call; MKL's 556 us NT-LSTM in an earlier run)."""
    end = time.perf_counter() + warm_s
    warm = 0
    while warm < 3 or time.perf_counter() < end:
        fn()
        warm += 1
    one = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        fn()
        one = min(one, time.perf_counter() - t)
    return max(1, int(target_s / max(one, 1e-7)))


def wait_quiet(meter: CpuMeter, max_foreign: float, timeout_s: float, window_s: float = 0.03) -> bool:
    """Sleep until other processes use at most ``max_foreign`` cores over a short window (or time out)."""
    end = time.perf_counter() + timeout_s
    while True:
        meter.start()
        time.sleep(window_s)
        if meter.foreign_cores() <= max_foreign:
            return True
        if time.perf_counter() > end:
            return False


def time_interleaved(fns: dict, *, rounds: int, round_s: float, max_foreign: float, max_rounds: int,
                     max_wait: float = 0.1, quiet_wait_s: float = 1.0, settle_s: float = 0.15,
                     progress=None) -> tuple[dict, dict]:
    """Time every callable in ``fns`` round by round, discarding disturbed rounds.

    A round is disturbed when other processes used more than ``max_foreign``
    cores during it, or this process's threads together spent more than
    ``max_wait`` of it waiting for a core (a parallel kernel whose second thread waits for a
    time slice is not measuring the kernel).

    Before each method's timed block the harness sleeps ``settle_s``: thread
    pools spin after a call (OpenBLAS for about 0.1 s, OpenMP runtimes
    briefly), and a pool left spinning by the previous method would steal a
    core from the next one on a 2-core machine.

    Returns ({name: Timing}, {"kept", "tried", "noisy", "disturbance_median"}).
    Stops after ``rounds`` kept rounds or ``max_rounds`` tried; if fewer than
    3 were kept, the least-disturbed rounds are used and ``noisy`` is set.
    """
    names = list(fns)
    per_call = {}
    for n in names:  # sized after the same settling as a timed block: another library's spinning
        time.sleep(settle_s)  # pool had left eie's calls 4 per round (sized by millisecond calls)
        per_call[n] = calls_for(fns[n], round_s / max(1, len(names)))
    meter = CpuMeter()
    all_rounds = []
    kept = 0
    for r in range(max_rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        wait_quiet(meter, max_foreign, quiet_wait_s)
        meter.start()
        sample = {}
        for n in order:
            fn, c = fns[n], per_call[n]
            time.sleep(settle_s)  # let the previous library's idle workers stop spinning (not timed)
            fn()  # re-warm this method's caches and thread pool (not timed)
            t = time.perf_counter()
            if hasattr(fn, "timed"):  # GPU methods time themselves with CUDA events
                sample[n] = fn.timed(c) / c * 1e6
                continue
            for _ in range(c):
                fn()
            sample[n] = (time.perf_counter() - t) / c * 1e6
        foreign, waited = meter.read()
        # cores others took, or our threads' time spent queued for one, relative to its limit
        disturbed = max(foreign / max_foreign, waited / max_wait) if max_foreign > 0 and max_wait > 0 else 0.0
        all_rounds.append((disturbed, sample))
        kept += disturbed <= 1.0
        if progress is not None:
            progress.update(1)
        if kept >= rounds:
            break
    good = [s for f, s in all_rounds if f <= 1.0]
    noisy = len(good) < 3
    if noisy:  # the quietest third, at least 3
        good = [s for f, s in sorted(all_rounds, key=lambda t: t[0])[:max(3, len(all_rounds) // 3)]]
    out = {n: Timing([s[n] for s in good], per_call[n]) for n in names}
    stats = {"kept": len(good), "tried": len(all_rounds), "noisy": noisy,
             "disturbance_median": float(np.median([f for f, _ in all_rounds]))}
    return out, stats
