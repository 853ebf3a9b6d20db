"""Self-calibration: the kernel costs measured on the CPU that runs them, once per CPU and version, cached.

The kernel choices of an :class:`~eie_runtime.execution.ExecLayout` come from
per-thread kernel costs (``kernel_costs.KernelCosts``). Their defaults were
measured on one Intel host; on another CPU the same kernels can rank
differently (a vector scatter that is cheap on one core is microcoded on
another). So the first layout built on a CPU that has not been seen before
(its model name, LLVM name and features, the package version and the kernel
sources: :func:`identity`) times the kernels whose relative costs decide
choices on two synthetic layers shaped like the paper's (a 4096 x 4096 layer
at 4% weights, VGG-7's, and a 1024 x 4096 one at 10%, Alex-8's: the table
and the per-code scatter), in both modes, and keeps the result:

- the measurement: on one thread (the costs are per thread; on a busy
  machine a parallel call whose other thread waits for a core times the
  scheduler), 7 short rounds per kernel, interleaved (each round runs every
  kernel for about 3 ms, in a rotating order, each call timed), the median
  of the rounds' median calls (a call that lost its core to another
  process moves neither); a cost is ns per unit of work (sliced-ELL steps, stored entries,
  entries in non-zero columns), the geometric mean over the two layers
  where both measured it;
- a dead band against noise (:func:`settle`): if every measured cost is
  within ``SNAP`` of the defaults scaled by their common factor (the host is
  only uniformly faster or slower), the defaults themselves are kept, so
  such hosts choose exactly as the reference host; otherwise the measured
  costs are used, and the costs not measured here (the kernels a host
  without AVX-512 cannot run) are the defaults times that factor;
- the cache: one JSON file per identity under the user's cache folder
  (``$EIE_CACHE_DIR``, else the platform's, e.g. ``~/.cache/eie-runtime``),
  written atomically (the ``KEEP_FILES`` most recent kept); never in the
  package. A read-only or missing folder
  just keeps the measured costs in memory for this process; a file that
  cannot be read back (corrupt, another identity) is reported by a warning
  naming it and measured again.

A one-line notice on stderr says when it measures (about 1-3 s, more when
the kernels compile for the first time). ``EIE_SELF_CALIBRATE=0`` (or
``kernel_costs.self_calibration(False)``) turns it off (the defaults are
used); ``EIE_KERNEL_COSTS`` still overrides everything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .kernel_costs import KernelCosts

CACHE_ENV_VAR = "EIE_CACHE_DIR"
FORMAT = 1
SNAP = 0.15  # measured costs all within 15% of the scaled defaults: keep the defaults
ROUNDS = 7
ROUND_S = 0.003  # per kernel and round
KEEP_FILES = 4  # calibration files kept in the cache folder (other CPUs, versions, kernel sources)
# (rows, columns, weight density, activation density): VGG-7's shape and densities, Alex-8's
LAYERS = {"table": (4096, 4096, 0.04, 0.375), "by_code": (1024, 4096, 0.10, 0.35)}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def identity() -> dict:
    """What a calibration is valid for: the CPU (model, the LLVM CPU and features Numba compiles for), the
    package version and the kernels' compile key (their sources, Numba, llvmlite and Python versions)."""
    from importlib import metadata

    from .kernels import jit

    try:
        version = metadata.version("eie-runtime")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "not installed"

    name, features = jit.compile_target()
    return {"cpu_model": cpu_model(), "llvm_cpu": name,
            "features": ",".join(sorted(f for f in features.split(",") if f.startswith("+"))),
            "eie_runtime": version, "kernels": jit.cache_key()}


def cache_dir() -> Path:
    """``$EIE_CACHE_DIR``, else the user's cache folder for eie-runtime (never inside the package)."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env)
    from numba.misc.appdirs import AppDirs

    return Path(AppDirs(appname="eie-runtime", appauthor=False).user_cache_dir)


def cache_path(ident: dict | None = None) -> Path:
    """The file holding this CPU's costs: ``kernel-costs-<hash of identity()>.json`` in :func:`cache_dir`."""
    ident = identity() if ident is None else ident
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"kernel-costs-{key}.json"


# ---------------------------------------------------------------- the cases
def _layout(m, k, density, seed):
    from .execution import ExecLayout
    from .format import InterleavedCSC
    from .kernels import sliced_ell as _ell
    from .paper_layers import random_codes, shared_codebook

    rng = np.random.default_rng(seed)
    matrix = InterleavedCSC.from_codes(random_codes(m, k, density, rng), shared_codebook(rng), 64)
    # the defaults, not current(): no recursion; the sliced ELL whatever its cost, to be timed
    return ExecLayout(matrix, sliced_ell=_ell.AVAILABLE, costs=KernelCosts())


def fixed16_args(ex, x: np.ndarray):
    """int16 input, its plan and shift as a calibrated layer would have them (in 13, w 18, out 13 fraction
    bits: what ``calibrate`` picks for the paper layers' inputs)."""
    from .fixed_point import to_fixed

    in_frac, w_frac, out_frac = 13, 18, 13
    x_q = to_fixed(np.clip(x, -3.9, 3.9), in_frac)
    plan = ex.fixed16.plan(w_frac, np.zeros(ex.shape[0], np.int16), in_frac + w_frac - out_frac)
    return x_q, plan, in_frac + w_frac - out_frac


def cases(ex, x: np.ndarray) -> dict:
    """{cost name: (callable, work units per call)}: every single-vector kernel this layout could run on ``x``,
    fixed16 with clamps (what calibrated layers run)."""
    from .kernels import column_scatter as _scatter
    from .kernels import row_gather as _gather
    from .kernels import sliced_ell as _ell

    m, _ = ex.shape
    bias, out, out_q = np.zeros(m, np.float32), np.empty(m, np.float32), np.empty(m, np.int16)
    codebook = ex.matrix.codebook
    rows, csr, csc = ex.rows, ex.row_gather.arrays(), ex.column_scatter.arrays()
    touched = int(np.count_nonzero(x[csr.cols] != 0))  # entries in non-zero columns
    x_q, plan, shift = fixed16_args(ex, x)
    found = {"gather_ns_per_entry": (
        lambda: _gather.gather_f32(rows.rowptr, csr.cols, csr.codes, codebook, rows.row_bounds, x, bias, False, out),
        ex.nnz)}
    if ex.column_scatter.by_code:  # short blocks: the per-(row, code) scatter is the one this layer runs
        found["scatter_by_code_ns_per_entry"] = (
            lambda: _scatter.scatter_by_code_f32(*csc, codebook, rows.bounds, x, bias, False, out), touched)
    else:
        found["scatter_ns_per_entry"] = (
            lambda: _scatter.scatter_f32(*csc, codebook, rows.bounds, x, bias, False, out), touched)
    for name, vector in (("scatter_fixed16_ns_per_entry", True), ("scatter_fixed16_scalar_ns_per_entry", False)):
        found[name] = (lambda vector=vector: _scatter.scatter_fixed16(
            *csc, plan.codebook_q, rows.bounds, x_q, plan.bias32, shift, False, True, out_q, vector), touched)
    if ex.ell_choice().kept and plan.halves:
        ell = ex.sliced_ell.arrays()
        steps = ex.sliced_ell.steps
        found["sliced_ell_ns_per_step"] = (
            lambda: _ell.sliced_ell_f32(*ell, rows.row_bounds, x, bias, False, out, 0), steps)
        for name, fit16_amax in (("sliced_ell_fixed16_ns_per_step", -1),
                                 ("sliced_ell_fixed16_words_ns_per_step", 32768)):
            found[name] = (lambda fit16_amax=fit16_amax: _ell.sliced_ell_fixed16(
                ell.gptr, ell.slots, ell.segs, plan.codebook_words, rows.row_bounds, x_q, plan.bias32, shift,
                plan.halves[0], fit16_amax, (0.0, 0.0), False, out_q), steps)
    return found


def time_rounds(fns: dict, rounds: int, round_s: float) -> dict:
    """{name: seconds per call}: each round runs every function for about ``round_s``, back to back and each
    call timed, the order rotating from round to round; the median of the rounds' median calls. A call
    that lost its core to another process (a time slice: milliseconds) moves neither median."""
    names = list(fns)
    calls = {}
    for name in names:  # calls per round, from the fastest of three (the first ones wake thread pools)
        one = []
        for _ in range(3):
            t = time.perf_counter()
            fns[name]()
            one.append(time.perf_counter() - t)
        calls[name] = max(3, int(round_s / max(min(one), 1e-7)))
    per = {name: [] for name in names}
    clock = time.perf_counter
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, n = fns[name], calls[name]
            got = np.empty(n)
            for i in range(n):
                t = clock()
                fn()
                got[i] = clock() - t
            per[name].append(float(np.median(got)))
    return {name: float(np.median(v)) for name, v in per.items()}


def measure(rounds: int | None = None, round_s: float | None = None) -> dict:
    """{cost name: ns per unit and thread} on the synthetic layers (geometric mean where both measure it);
    ``ROUNDS`` rounds of ``ROUND_S`` per kernel unless given."""
    import numba

    from .paper_layers import random_activations

    per_layer = {}
    threads = numba.get_num_threads()
    # one thread: the costs are per thread, and on a busy machine a parallel call whose second thread waits
    # for a core measures the scheduler (20 ms per call on the 2-core development machine under load)
    numba.set_num_threads(1)
    try:
        for i, (label, (m, k, density, act)) in enumerate(LAYERS.items()):
            ex = _layout(m, k, density, seed=i)
            x = random_activations(k, act, np.random.default_rng(100 + i))
            found = cases(ex, x)
            fns = {name: fn for name, (fn, _) in found.items()}
            for fn in fns.values():  # compile and warm outside the clock
                fn()
            secs = time_rounds(fns, rounds or ROUNDS, round_s or ROUND_S)
            per_layer[label] = {name: secs[name] * 1e9 / max(1, units) for name, (_, units) in found.items()}
    finally:
        numba.set_num_threads(threads)
    names = {name for costs in per_layer.values() for name in costs}
    return {name: math.exp(float(np.mean([math.log(c[name]) for c in per_layer.values() if name in c])))
            for name in sorted(names)}


def settle(measured: dict, default: KernelCosts | None = None) -> tuple[KernelCosts, bool]:
    """(the costs to choose by, whether they are the defaults): the defaults when every measured cost lies
    within ``SNAP`` of the defaults times their common factor (the median ratio), else the measured costs,
    with the unmeasured ones at the defaults times that factor."""
    default = default or KernelCosts()
    base = default.to_dict()
    ratios = {name: value / base[name] for name, value in measured.items() if name in base}
    if not ratios:
        return default, True
    scale = float(np.median(list(ratios.values())))
    if all(abs(r / scale - 1) <= SNAP for r in ratios.values()):
        return default, True
    values = {name: base[name] * scale for name in base}
    values.update((name, measured[name]) for name in ratios)
    return KernelCosts.from_dict(values, source="measured kernel costs"), False


class Calibration(NamedTuple):
    costs: KernelCosts
    source: str  # the cache file, or why there is none
    measured: dict  # {cost: ns} as measured (before settle)
    snapped: bool  # the defaults were kept (within the dead band)


def read(path: Path, ident: dict) -> Calibration:
    """The calibration cached in ``path`` for ``ident``; ``ValueError`` naming the file and what is wrong."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"kernel costs cache {path} could not be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"kernel costs cache {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"kernel costs cache {path}: not a format-{FORMAT} calibration file")
    if doc.get("identity") != ident:
        raise ValueError(f"kernel costs cache {path} was measured for another CPU or version")
    measured = doc.get("measured")
    if not isinstance(measured, dict) or not all(isinstance(v, (int, float)) for v in measured.values()):
        raise ValueError(f"kernel costs cache {path}: 'measured' is not a mapping of cost names to ns")
    costs = KernelCosts.from_dict(doc.get("costs"), source=f"kernel costs cache {path}")
    return Calibration(costs, str(path), measured, bool(doc.get("snapped")))


def write(path: Path, ident: dict, cal: Calibration) -> None:
    from .atomic import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "identity": ident, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "measured": cal.measured, "snapped": cal.snapped, "costs": cal.costs.to_dict()}
    with atomic_open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    _prune(path)


def _prune(keep: Path) -> None:
    """Remove all but the ``KEEP_FILES`` most recent calibration files beside ``keep`` (each change of the
    kernels' sources makes a new one; best effort)."""
    try:
        files = sorted(keep.parent.glob("kernel-costs-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[KEEP_FILES:]:
            if old != keep:
                old.unlink()
    except OSError:
        pass


def calibrate(path: Path | None = None, quiet: bool = False) -> Calibration:
    """This CPU's costs: read from its cache file when there is a valid one, else measured now (a one-line
    notice on stderr unless ``quiet``) and written there (when the folder cannot be written, kept in memory
    only)."""
    ident = identity()
    path = cache_path(ident) if path is None else Path(path)
    if path.exists():
        try:
            return read(path, ident)
        except ValueError as exc:
            warnings.warn(f"{exc}; measuring again", RuntimeWarning, stacklevel=2)
    if not quiet:
        print(f"eie-runtime: measuring the kernel costs of this CPU ({ident['cpu_model']}), once per CPU "
              f"and version; EIE_SELF_CALIBRATE=0 turns this off", file=sys.stderr, flush=True)
    measured = measure()
    costs, snapped = settle(measured)
    cal = Calibration(costs, str(path), measured, snapped)
    try:
        write(path, ident, cal)
    except OSError as exc:
        return cal._replace(source=f"measured, not cached ({path}: {exc.strerror or exc})")
    except Exception as exc:  # noqa: BLE001 - e.g. atomic_open refusing a non-file: measured costs still hold
        return cal._replace(source=f"measured, not cached ({path}: {exc})")
    return cal
