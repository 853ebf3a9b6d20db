"""Design-space sweeps: every workload on every configuration of a grid, cached, in parallel.

>>> from eie_runtime.hardware import sweep
>>> table = sweep(["alex7", "ntwe", ("model.eie", x)], {"fifo_depth": [1, 2, 4, 8], "n_pe": [32, 64]})
>>> table.where(workload="alex7", n_pe=64).column("load_efficiency")
>>> table.to_csv("sweep.csv")

Runs go to local processes (``concurrent.futures``) by default, or to a Ray
cluster (``ray_address``: ``ray.init(address)``; ``"local"`` starts one here).
The unit of work is one workload with its configurations (split further when
there are fewer workloads than twice the workers), biggest first, so a worker
builds a layer once and encodes it once per PE count. Results are cached on disk
(:mod:`.sweep_cache`): a repeated sweep only runs what it has not seen.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from tqdm.auto import tqdm

from ..errors import EIEError, EIEInputError
from ..layer import EIELinear
from .config import HardwareConfig
from .simulate import simulate
from .sweep_cache import ResultCache
from .sweep_table import SweepTable
from .workloads import Workload, resolve_workloads

ENERGY_PARTS = ("clock", "act_queue", "ptr_read", "spmat_read", "arith", "act_rw", "lnzd")


def expand_grid(grid, base: HardwareConfig | None = None) -> list[HardwareConfig]:
    """Configurations from a grid: ``{field: value or [values]}`` (every combination, in order), or a list
    of ``HardwareConfig`` / ``{field: value}`` dicts taken as they are. Fields not given keep ``base``'s."""
    base = base or HardwareConfig()
    if grid is None:
        return [base]
    if isinstance(grid, HardwareConfig):
        return [grid]
    if isinstance(grid, dict):
        names = list(grid)
        values = [v if isinstance(v, (list, tuple, range)) else [v] for v in grid.values()]
        for n, v in zip(names, values):
            if not len(v):
                raise EIEInputError(f"sweep grid: {n} has no values")
        return [base.replace(**dict(zip(names, combo))) for combo in itertools.product(*values)]
    configs = [c if isinstance(c, HardwareConfig) else base.replace(**c) for c in grid]
    if not configs:
        raise EIEInputError("sweep grid: no configurations")
    return configs


# ------------------------------------------------------------------ one worker
_BASE: dict[str, object] = {}  # workload key -> (target, x), calibrated (a few, most recent)
_ENCODED: dict[tuple, object] = {}  # (workload key, n_pe) -> (target, x) for that PE count


def _remember(cache: dict, key, value, keep: int = 4):
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > keep:
        cache.pop(next(iter(cache)))
    return value


def _reencoded(layer: EIELinear, n_pe: int) -> EIELinear:
    if layer.matrix.n_pe == n_pe:
        return layer
    return EIELinear(layer.matrix.reencode(n_pe), bias=layer.bias, activation=layer.activation, fixed=layer.fixed,
                     name=layer.name)


class _TracedCalls:
    """A model stand-in that replays traced layer calls (the ``_eie_trace`` protocol of ``simulate``)."""

    def __init__(self, calls):
        self.calls = calls

    def _eie_trace(self, x):
        return self.calls


def _runnable(w: Workload, n_pe: int):
    """(target, x) for ``simulate`` with every layer encoded for ``n_pe`` (built once per worker)."""
    hit = _ENCODED.get((w.key, n_pe))
    if hit is not None:
        return hit
    base = _BASE.get(w.key)
    if base is None:
        if w.kind == "paper":
            from ..paper_layers import make_paper_input, make_paper_layer

            name, seed = w.payload
            layer, x = make_paper_layer(name, n_pe=n_pe, seed=seed), make_paper_input(name, seed=seed)
            layer.calibrate(x)
            base = ([layer], x)
        elif w.kind == "chain":
            base = w.payload
        else:
            base = (w.payload, None)
        _remember(_BASE, w.key, base)
    target, x = base
    if w.kind == "calls":
        layers = {id(layer): _reencoded(layer, n_pe) for layer, _ in target}
        runnable = (_TracedCalls([(layers[id(layer)], inp) for layer, inp in target]), None)
    else:
        runnable = ([_reencoded(layer, n_pe) for layer in target], x)
    return _remember(_ENCODED, (w.key, n_pe), runnable)


def _row(w: Workload, config: HardwareConfig, report) -> dict:
    layers = report.layers
    total_pe_cycles = sum(r.cycles * len(r.busy) for r in layers)
    energy = report.energy
    spmat = sum(r.spmat_reads for r in layers)
    ptr = sum(r.ptr_reads for r in layers)
    row = {"workload": w.name, **config.to_dict(), "frames": report.frames, "layer_runs": len(layers),
           "cycles": report.cycles, "time_us": report.time_us, "theoretical_us": report.theoretical_us,
           "load_efficiency": report.load_efficiency,
           "alu_utilization": sum(float(r.busy.sum()) for r in layers) / total_pe_cycles if total_pe_cycles else 0.0,
           "energy_uj": energy.total}
    row.update({f"energy_{part}_uj": getattr(energy, part) for part in ENERGY_PARTS})
    row.update({
        "power_w": report.power_w, "frames_per_s": report.frames_per_s, "frames_per_j": report.frames_per_j,
        "spmat_reads": spmat, "spmat_bytes": spmat * config.sram_width // 8,
        "ptr_reads": ptr, "ptr_bytes": ptr * 2 * config.pointer_bits // 8,
        "queue_pushes": sum(r.queue_pushes for r in layers),
        "useful_macs": sum(r.useful_macs for r in layers), "padding_issued": sum(r.padding_issued for r in layers),
        "empty_slices": sum(r.empty_slices for r in layers),
        "broadcast_stalls": sum(r.broadcast_stalls for r in layers),
        "matches_kernel": report.matches_kernel, "error": None,
    })
    return row


def _error_row(w: Workload, config: HardwareConfig, exc: Exception) -> dict:
    return {"workload": w.name, **config.to_dict(), "error": f"{type(exc).__name__}: {exc}"}


def run_group(w: Workload, configs: list[HardwareConfig], verify: bool = True) -> list[dict]:
    """Simulate one workload on some configurations; one row each.

    The outputs depend on neither the timing nor the PE count, so only the
    first run is checked against the fixed16 kernel and its verdict stands
    for the others.
    """
    rows, verdict = [], None
    for i, config in enumerate(configs):
        try:
            target, x = _runnable(w, config.n_pe)
            report = simulate(target, x, config, verify=verify and verdict is None)
        except EIEError as exc:  # e.g. pointers too narrow for this PE count: a row that says so
            rows.append(_error_row(w, config, exc))
            continue
        row = _row(w, config, report)
        if verdict is None:
            verdict = row["matches_kernel"]
        row["matches_kernel"] = verdict
        rows.append(row)
    return rows


# ------------------------------------------------------------------ the sweep
def sweep(workloads, grid=None, *, base: HardwareConfig | None = None, processes: int | None = None,
          ray_address: str | None = None, cache=True, progress: bool = True, verify: bool = True) -> SweepTable:
    """Simulate every workload on every configuration of ``grid``; one row each.

    Parameters
    ----------
    workloads
        Paper layer names (``"alex7"``, ``"alex7@3"`` for seed 3), ``(".eie"
        path, input)``, ``(layer, layers or model, input)`` pairs,
        :class:`~eie_runtime.hardware.workloads.Workload` objects, or a list
        of them (see :mod:`eie_runtime.hardware.workloads`).
    grid
        ``{field: [values]}`` over any ``HardwareConfig`` fields (every
        combination), or a list of configurations; None: ``base`` alone.
    base : HardwareConfig
        The values of the fields the grid does not set (the paper's by default).
    processes : int
        Local worker processes (default: the CPU count; 1 runs here).
    ray_address : str
        Run on Ray instead: ``ray.init(address=ray_address)`` unless Ray is
        already initialised (``"local"`` starts a local cluster).
    cache : bool, str or Path
        The on-disk result cache: True for the default folder
        (``$EIE_SWEEP_CACHE`` or the user's cache folder), a folder, or
        False for none.
    progress : bool
        Show a tqdm progress bar.
    """
    t0 = time.perf_counter()
    wls = resolve_workloads(workloads)
    configs = expand_grid(grid, base)
    store = None if cache is False else ResultCache(None if cache is True else cache)
    slots: dict[tuple[int, int], dict] = {}
    todo: dict[tuple[int, int], list[int]] = {}  # (workload, n_pe) -> config indices still to run
    for wi, w in enumerate(wls):
        for ci, config in enumerate(configs):
            row = store.get(store.key(w.key, config)) if store else None
            if row is not None:
                row["workload"] = w.name
                slots[wi, ci] = row
            else:
                todo.setdefault((wi, config.n_pe), []).append(ci)
    cached = len(slots)
    groups = [(wi, cis) for (wi, _), cis in todo.items()]
    bar = tqdm(total=len(wls) * len(configs), initial=cached, desc="sweep", unit="run", disable=not progress)

    def done(wi, cis, rows):
        for ci, row in zip(cis, rows):
            slots[wi, ci] = row
            if store is not None:
                store.put(store.key(wls[wi].key, configs[ci]), row)
        bar.update(len(rows))

    try:
        if ray_address is not None:
            _run_ray(wls, configs, groups, ray_address, verify, done)
        else:
            _run_local(wls, configs, groups, processes, verify, done)
    finally:
        bar.close()
    rows = [slots[wi, ci] for wi in range(len(wls)) for ci in range(len(configs))]
    return SweepTable(rows, cached=cached, computed=len(rows) - cached, seconds=time.perf_counter() - t0)


def _split(wls, groups, workers: int):
    """Chunks of work, biggest workload first: one per workload (its worker builds the layer once and
    re-encodes it per PE count) when there are enough to keep every worker busy, else smaller ones."""
    if not groups:
        return []
    per_workload: dict[int, list[int]] = {}
    for wi, cis in groups:
        per_workload.setdefault(wi, []).extend(cis)
    if len(per_workload) >= 2 * workers:
        chunks = list(per_workload.items())
    else:
        n_runs = sum(len(cis) for _, cis in groups)
        size = max(1, -(-n_runs // (4 * workers)))  # about four chunks per worker, for balance
        chunks = [(wi, cis[i:i + size]) for wi, cis in groups for i in range(0, len(cis), size)]
    return sorted(chunks, key=lambda c: -wls[c[0]].cost * len(c[1]))


def _run_local(wls, configs, groups, processes, verify, done):
    workers = processes or os.cpu_count() or 1
    chunks = _split(wls, groups, workers)
    if workers == 1 or len(chunks) <= 1:
        for wi, cis in chunks:
            done(wi, cis, run_group(wls[wi], [configs[c] for c in cis], verify))
        return
    # spawned, not forked: a forked child inherits whatever threads (and locks) the parent's kernels hold
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=context) as pool:
        futures = {pool.submit(run_group, wls[wi], [configs[c] for c in cis], verify): (wi, cis)
                   for wi, cis in chunks}
        for fut in as_completed(futures):
            wi, cis = futures[fut]
            done(wi, cis, fut.result())


def _run_ray(wls, configs, groups, address, verify, done):
    try:
        import ray
    except ImportError:
        raise EIEInputError("running a sweep on Ray needs the ray package: pip install 'eie-runtime[dse]'") from None
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                 log_to_driver=False)
    workers = max(1, int(ray.available_resources().get("CPU", 1)))
    remote = ray.remote(run_group)
    refs = {}  # each workload travels to the object store once
    pending = {}
    for wi, cis in _split(wls, groups, workers):
        if wi not in refs:
            refs[wi] = ray.put(wls[wi])
        pending[remote.remote(refs[wi], [configs[c] for c in cis], verify)] = (wi, cis)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            wi, cis = pending.pop(ref)
            done(wi, cis, ray.get(ref))
