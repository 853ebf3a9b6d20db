"""The simulator's driver: validation, allocation, per-layer runs, model front ends."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..errors import EIEFormatError, EIEInputError
from ..fixed_point import from_fixed, to_fixed
from ..layer import EIELinear
from . import cycle_model as _cm
from .config import HardwareConfig
from .energy import layer_energy
from .report import LayerReport, SimulationReport
from .trace import trace_model


@dataclass
class PreparedLayer:
    """A layer checked against a configuration, with the arrays the cycle model reads."""

    layer: EIELinear
    name: str
    n_pass: int
    start: np.ndarray  # (n_pass, n_pe, K) int64
    end: np.ndarray
    row0: np.ndarray
    base: np.ndarray  # (n_pe,) each PE's first entry
    codebook_q: np.ndarray  # int64
    bias_q: np.ndarray  # int64 (M,)
    calibrated: bool


_NO_TRACE_STATE = np.zeros((0, 1), dtype=np.uint8)  # simulate_pass records nothing into these
_NO_TRACE_QUEUE = np.zeros((0, 1), dtype=np.int16)


#: What one simulated layer may allocate before its run: the per-pass pointer tables take
#: ``24 * n_pass * n_pe * K`` bytes (``n_pass = ceil(M / n_pe / 64)`` with output passes), refused with an
#: EIEInputError above this; raise it by assigning (SECURITY.md). The paper's largest layer needs 38 MB.
SIMULATION_LIMITS = {"max_pass_table_bytes": 1 << 30}


def _check_config(config) -> HardwareConfig:
    if config is None:
        return HardwareConfig()
    if not isinstance(config, HardwareConfig):
        raise EIEInputError(f"config must be a HardwareConfig, got {type(config).__name__}")
    return config


def prepare_layer(layer: EIELinear, config: HardwareConfig, *, reencode: bool = False,
                  calibrate_on=None) -> PreparedLayer:
    """Check ``layer`` against ``config`` and build the cycle model's arrays.

    A layer encoded for another PE count is refused unless ``reencode``; a
    layer without fixed-point parameters is calibrated (on a copy) with the
    float32 samples ``calibrate_on``.
    """
    if not isinstance(layer, EIELinear):
        raise EIEInputError(f"expected an EIELinear, got {type(layer).__name__}")
    name = layer.name or "layer"
    mat = layer.matrix
    if mat.n_pe != config.n_pe:
        if not reencode:
            raise EIEInputError(
                f"layer {name!r} is encoded for {mat.n_pe} PEs but the hardware config has {config.n_pe}: "
                f"re-encode it (layer.matrix.reencode({config.n_pe}), simulate(..., reencode=True) "
                f"or `eie simulate --reencode`), or simulate with n_pe={mat.n_pe}")
        layer = EIELinear(mat.reencode(config.n_pe), bias=layer.bias, activation=layer.activation,
                          fixed=layer.fixed, name=layer.name)
        mat = layer.matrix
    calibrated = False
    if layer.fixed is None:
        if calibrate_on is None:
            raise EIEInputError(f"layer {name!r} has no fixed-point parameters and no samples to calibrate on")
        layer = copy.copy(layer)  # never change the caller's layer
        layer.calibrate(calibrate_on)
        calibrated = True
    m, k = mat.shape
    n_pe = config.n_pe
    rows_per_pe = -(-m // n_pe)
    # without output passes one activation memory holds every output row
    rows_per_pass = config.regfile_entries if config.output_passes else max(rows_per_pe, 1)
    n_pass = max(1, -(-rows_per_pe // rows_per_pass))
    table = 3 * 8 * n_pass * n_pe * k  # the pass tables below; the simulation's work grows with them too
    if table > SIMULATION_LIMITS["max_pass_table_bytes"]:
        raise EIEInputError(
            f"layer {name!r}: simulating {m}x{k} on {n_pe} PEs takes {n_pass} output passes and {table} bytes of "
            f"pointer tables, over SIMULATION_LIMITS['max_pass_table_bytes'] = "
            f"{SIMULATION_LIMITS['max_pass_table_bytes']} (eie_runtime.hardware.simulate.SIMULATION_LIMITS)")
    start = np.empty((n_pass, n_pe, k), dtype=np.int64)
    end = np.empty_like(start)
    row0 = np.empty_like(start)
    _cm.pass_slices(mat.entries, mat.ptr, rows_per_pass, n_pass, start, end, row0)
    _check_pointer_width(name, end - start, config)
    return PreparedLayer(
        layer=layer, name=name, n_pass=n_pass, start=start, end=end, row0=row0,
        base=np.ascontiguousarray(mat.ptr[:, 0]),
        codebook_q=layer.quantized_codebook().astype(np.int64),
        bias_q=layer.quantized_bias().astype(np.int64),
        calibrated=calibrated,
    )


def _check_pointer_width(name: str, counts: np.ndarray, config: HardwareConfig) -> None:
    """Each pointer array (one per output pass and input batch) must address its entries.

    The source register files hold ``regfile_entries`` activations per PE, so
    longer inputs run in batches of ``regfile_entries * n_pe`` columns
    (Section IV), each with its own pointer array ("By setting the input
    length and starting address of pointer array, EIE is instructed to
    execute different layers").
    """
    n_pass, n_pe, k = counts.shape
    if k == 0:
        return
    batch = config.regfile_entries * n_pe
    starts = np.arange(0, k, batch)
    per_batch = np.add.reduceat(counts, starts, axis=2)  # (n_pass, n_pe, n_batches)
    limit = (1 << config.pointer_bits) - 1
    if per_batch.max() > limit:
        b, p, c = np.unravel_index(int(np.argmax(per_batch)), per_batch.shape)
        c0 = int(starts[c])
        c1 = min(k, c0 + batch) - 1
        raise EIEFormatError(
            f"layer {name!r}: PE {p}'s slice of input columns {c0}..{c1}"
            f"{f' (output pass {b})' if n_pass > 1 else ''} holds {int(per_batch[b, p, c])} entries, but "
            f"{config.pointer_bits}-bit pointers address at most {limit}: use more PEs or a larger pointer_bits")


def simulate_vector(prep: PreparedLayer, x_q: np.ndarray, config: HardwareConfig, *,
                    name: str | None = None, verify: bool = True, trace=None) -> LayerReport:
    """Run one int16 input vector (``in_frac`` bits) through one prepared layer, cycle by cycle.

    ``trace``: optional ``(state uint8 (T, n_pe), queue int16 (T, n_pe))`` arrays that receive each
    cycle's class and queue occupancy (``cycle_model.simulate_pass``); passes follow one another.
    """
    layer = prep.layer
    mat = layer.matrix
    m, k = mat.shape
    x_q = np.asarray(x_q)
    if x_q.dtype != np.int16 or x_q.shape != (k,):
        raise EIEInputError(f"layer {prep.name!r}: simulated input must be int16 of shape ({k},), "
                            f"got {x_q.dtype} {x_q.shape}")
    n_pe = config.n_pe
    nz_idx = np.flatnonzero(x_q).astype(np.int64)
    nz_val = x_q[nz_idx].astype(np.int64)
    rows_per_pe = -(-m // n_pe)
    acc = np.zeros((n_pe, max(rows_per_pe, 1)), dtype=np.int64)
    rows = np.arange(m)
    acc[rows % n_pe, rows // n_pe] = prep.bias_q
    pe_stats = np.zeros((n_pe, _cm.N_PE_STATS), dtype=np.int64)
    ccu_stats = np.zeros(_cm.N_CCU_STATS, dtype=np.int64)
    state, queue = trace if trace is not None else (_NO_TRACE_STATE, _NO_TRACE_QUEUE)
    if trace is not None and not (
            isinstance(state, np.ndarray) and isinstance(queue, np.ndarray) and state.dtype == np.uint8
            and queue.dtype == np.int16 and state.ndim == 2 and state.shape == queue.shape
            and state.shape[1] == n_pe and state.flags.c_contiguous and queue.flags.c_contiguous):
        raise EIEInputError(f"trace must be C-contiguous (uint8, int16) arrays of one shape (T, {n_pe})")
    cycles = 0
    for b in range(prep.n_pass):
        cycles += int(_cm.simulate_pass(
            mat.entries, prep.base, prep.start[b], prep.end[b], prep.row0[b], nz_idx, nz_val,
            prep.codebook_q, layer.fixed.shift, acc, config.fifo_depth, config.entries_per_line,
            config.front_latency, config.arith_stages, config.bypass, config.queue_release == "pointer_read",
            config.pointer_reads == "in_order", pe_stats, ccu_stats, state[cycles:], queue[cycles:]))
    y = acc[rows % n_pe, rows // n_pe]
    if layer.activation == "relu":
        y = np.maximum(y, 0)  # on write-back
    out = y.astype(np.int16)
    # (the core kernel cannot take K = 0 inputs; there the output is the bias)
    matches = bool(np.array_equal(out, layer.run_fixed16_int(x_q))) if verify and k else None
    st = pe_stats
    useful = int(st[:, _cm.USEFUL].sum())
    padding_issued = int(st[:, _cm.PADDING].sum())
    counts = dict(queue_pushes=int(st[:, _cm.QUEUE_PUSHES].sum()), ptr_reads=int(st[:, _cm.PTR_READS].sum()),
                  spmat_reads=int(st[:, _cm.SPMAT_READS].sum()))
    energy = layer_energy(cycles=cycles, n_pe=n_pe, lnzd_units=config.lnzd_units,
                          entries_issued=useful + padding_issued, useful_macs=useful,
                          sram_width=config.sram_width, **counts)
    return LayerReport(
        name=name or prep.name, shape=(m, k), config=config, cycles=cycles,
        theoretical_cycles=mat.stored_entries * (len(nz_idx) / k if k else 0.0) / n_pe,
        busy=st[:, _cm.BUSY].copy(), stalled=st[:, _cm.STALLED].copy(), starved=st[:, _cm.STARVED].copy(),
        useful_macs=useful, padding_issued=padding_issued, padding_entries=mat.padding_entries,
        stored_entries=mat.stored_entries, nonzero_activations=len(nz_idx), passes=prep.n_pass,
        empty_slices=int(st[:, _cm.EMPTY_SLICES].sum()), broadcast_stalls=int(ccu_stats[_cm.CCU_FULL_STALLS]),
        hazard_stalls=int(st[:, _cm.HAZARD_STALLS].sum()), energy=energy, output=out,
        fixed=layer.fixed.to_dict(), calibrated=prep.calibrated, matches_kernel=matches, **counts)


def simulate(target, x, config: HardwareConfig | None = None, *, reencode: bool = False,
             verify: bool = True, frames: int | None = None) -> SimulationReport:
    """Run a layer, a chain of layers, or a model on the simulated EIE, cycle by cycle.

    Parameters
    ----------
    target : EIELinear, list of EIELinear, or a model
        - one layer, or an ordered list forming a feed-forward chain (layer
          ``i + 1`` takes layer ``i``'s int16 output; re-quantized if its
          ``in_frac`` differs from the previous ``out_frac``);
        - any model (a compressed torch model, a converted ONNX graph, an
          :class:`~eie_runtime.lstm.EIELSTMCore`, ...): one forward pass is
          run and every EIE layer call is recorded with its input (see
          :mod:`eie_runtime.hardware.trace`); each call's every sample is one
          simulated M x V, in call order.
    x : array
        The input: (K,) or (B, K) for layers (B frames, run one at a time,
        as EIE does), or whatever the model's forward takes.
    config : HardwareConfig, optional
        Defaults to the paper's (64 PEs, 800 MHz, FIFO 8, 64-bit SRAM).
    reencode : bool
        Re-encode layers stored for another PE count instead of refusing them.
    verify : bool
        Check each simulated output against ``EIELinear.run_fixed16_int``.
    frames : int, optional
        Frames the run stands for (frames/s, frames/J); defaults to B for
        layers, and for a model to the number of samples its first EIE
        layer call received (B for a batch of B).

    Layers without fixed-point parameters are calibrated on a copy with the
    given input (``LayerReport.calibrated`` says so).

    Examples
    --------
    >>> from eie_runtime.hardware import HardwareConfig, simulate
    >>> report = simulate(layer, x, HardwareConfig(fifo_depth=4))
    >>> report.time_us, report.layers[0].load_efficiency, report.energy_uj
    """
    config = _check_config(config)
    if isinstance(target, EIELinear):
        target = [target]
    if isinstance(target, (list, tuple)):
        if not target:
            raise EIEInputError("simulate needs at least one layer")
        for i, layer in enumerate(target):
            if not isinstance(layer, EIELinear):
                raise EIEInputError(f"item {i} of the layer list is a {type(layer).__name__}, not an EIELinear")
        report = _simulate_chain(list(target), x, config, reencode, verify)
    else:
        report = _simulate_calls(trace_model(target, x), config, reencode, verify)
    if frames is not None:
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
            raise EIEInputError(f"frames must be a positive integer, got {frames!r}")
        report.frames = int(frames)
    return report


def _rows(x: np.ndarray) -> np.ndarray:
    """(K,) or (B, K) as (B, K) (reshape(-1, K) fails for K = 0)."""
    return x[None] if x.ndim == 1 else x


def _simulate_chain(layers, x, config, reencode, verify) -> SimulationReport:
    first = layers[0]
    samples = _rows(first.check_input(x))
    if not np.isfinite(samples).all():
        raise EIEInputError("the simulated input holds NaN or Inf (fixed16 cannot represent them)")
    for a, b in zip(layers, layers[1:]):
        if b.in_features != a.out_features:
            raise EIEInputError(f"layer {b.name!r} takes {b.in_features} inputs but layer {a.name!r} "
                                f"gives {a.out_features}: the list is not a feed-forward chain")
    # calibrate (copies of) layers without fixed-point parameters on the float activations they see
    preps = []
    flow = samples
    for i, layer in enumerate(layers):
        prep = prepare_layer(layer, config, reencode=reencode, calibrate_on=flow if layer.fixed is None else None)
        if prep.calibrated and i > 0:
            prev = preps[-1].layer.fixed
            prep.layer.calibrate(flow, in_frac=prev.out_frac)  # keep the chain's fractions aligned
            prep.codebook_q = prep.layer.quantized_codebook().astype(np.int64)
            prep.bias_q = prep.layer.quantized_bias().astype(np.int64)
        if prep.name == "layer":
            prep.name = f"layer{i}"
        preps.append(prep)
        if i + 1 < len(layers):
            flow = prep.layer.run_float32(flow)
    report = SimulationReport(config=config, frames=len(samples))
    for s in samples:
        x_q = to_fixed(s, preps[0].layer.fixed.in_frac)
        for i, prep in enumerate(preps):
            r = simulate_vector(prep, x_q, config, verify=verify)
            report.layers.append(r)
            if i + 1 < len(preps):
                nxt = preps[i + 1].layer.fixed.in_frac
                out_frac = prep.layer.fixed.out_frac
                x_q = r.output if nxt == out_frac else to_fixed(from_fixed(r.output, out_frac), nxt)
    return report


def _simulate_calls(calls, config, reencode, verify) -> SimulationReport:
    if not calls:
        raise EIEInputError("the model ran no EIE layer during its forward pass: nothing to simulate")
    by_layer: dict[int, list] = {}
    for layer, inp in calls:
        by_layer.setdefault(id(layer), []).append(_rows(inp))
    preps: dict[int, PreparedLayer] = {}
    # a forward pass over B samples is B frames: the first EIE call sees them all
    report = SimulationReport(config=config, frames=max(1, len(_rows(calls[0][1]))))
    seen: dict[int, int] = {}
    for idx, (layer, inp) in enumerate(calls):
        key = id(layer)
        if key not in preps:
            samples = np.concatenate(by_layer[key]) if layer.fixed is None else None
            preps[key] = prepare_layer(layer, config, reencode=reencode, calibrate_on=samples)
            if layer.name is None:
                preps[key].name = f"layer{len(preps) - 1}"
        prep = preps[key]
        for row in _rows(inp):
            n = seen.get(key, 0)
            seen[key] = n + 1
            if not np.isfinite(row).all():
                raise EIEInputError(f"layer {prep.name!r} got NaN or Inf during the traced forward pass")
            x_q = to_fixed(row, prep.layer.fixed.in_frac)
            report.layers.append(simulate_vector(prep, x_q, config, name=f"{prep.name}#{n}", verify=verify))
    return report
