"""``eie simulate``: run a .eie model (or a Table III layer) on the simulated EIE."""

from __future__ import annotations

from ..errors import EIEInputError
from .config import AUTHORS_SIMULATOR, POINTER_READS, QUEUE_RELEASE, HardwareConfig


def register(subparsers) -> None:
    """Add the ``simulate`` and ``sweep`` subcommands to the ``eie`` command line."""
    from .sweep_cli import register_sweep

    register_sweep(subparsers)
    p = subparsers.add_parser(
        "simulate", help="cycle-level EIE simulation: time, load balance, energy",
        description="Run a .eie model on the simulated EIE accelerator (paper defaults: 64 PEs, 800 MHz, "
                    "FIFO depth 8, 64-bit SpMat SRAM) and print per-layer cycles, time, load efficiency "
                    "and energy.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", help="a .eie model file or an ONNX file from `eie convert -o X.onnx` "
                                             "(needs --input)")
    src.add_argument("--layer", help="a Table III layer (alex6 ... ntlstm), uniform random at the paper's "
                                     "densities, seeded as in the benchmark")
    p.add_argument("--input", help=".npy input: (K,) or (B, K) for layers, or what the model takes; "
                                   "a .npz gives a model its named inputs")
    p.add_argument("--seed", type=int, default=0, help="seed for --layer (default 0)")
    p.add_argument("--pes", type=int, default=None, help="PEs (default: the file's encoding, 64 for --layer)")
    p.add_argument("--fifo", type=int, default=8, help="activation FIFO depth (default 8)")
    p.add_argument("--sram-width", type=int, default=64, help="SpMat SRAM width in bits (default 64)")
    p.add_argument("--clock-mhz", type=float, default=800.0, help="clock in MHz (default 800)")
    p.add_argument("--pointer-bits", type=int, default=16, help="pointer width in bits (default 16)")
    p.add_argument("--no-bypass", action="store_true", help="disable the accumulator bypass")
    p.add_argument("--queue-release", choices=QUEUE_RELEASE, default="finished",
                   help="when an activation leaves a PE's queue (default: finished, the paper's text)")
    p.add_argument("--pointer-reads", choices=POINTER_READS, default="ahead",
                   help="pointer reads one column ahead, or in order with a cycle per empty slice (default ahead)")
    p.add_argument("--no-output-passes", action="store_true",
                   help="one activation memory of max(K, M) instead of passes of 64 rows per PE")
    p.add_argument("--authors-model", action="store_true",
                   help="the three choices above as in the authors' C++ simulator")
    p.add_argument("--reencode", action="store_true",
                   help="re-encode layers stored for another PE count instead of refusing them")
    p.add_argument("--json", metavar="PATH", help="also write the full report as JSON")
    p.add_argument("--timeline", metavar="PREFIX",
                   help="also draw the first layer's run (first sample), per PE and cycle: PREFIX.png and a "
                        "self-contained PREFIX.html")
    p.set_defaults(func=_run)


def _config(args, n_pe: int) -> HardwareConfig:
    choices = dict(queue_release=args.queue_release, pointer_reads=args.pointer_reads,
                   output_passes=not args.no_output_passes)
    if args.authors_model:
        choices = AUTHORS_SIMULATOR
    return HardwareConfig(n_pe=n_pe, clock_mhz=args.clock_mhz, fifo_depth=args.fifo, sram_width=args.sram_width,
                          pointer_bits=args.pointer_bits, bypass=not args.no_bypass, **choices)


def _first_layer(obj):
    from ..layer import EIELinear

    if isinstance(obj, EIELinear):
        return obj
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], EIELinear):
        return obj[0]
    layers = getattr(obj, "layers", None)  # EIELSTMCore.layers(), GraphModel.layers
    found = layers() if callable(layers) else layers
    if isinstance(found, (list, tuple)):
        return next((item for item in found if isinstance(item, EIELinear)), None)
    return None


def _run(args) -> int:
    from ..array_files import load_array_file
    from ..atomic import check_output_path
    from ..tables import format_table
    from .simulate import simulate

    if args.json:  # before the simulation: a directory or a missing folder is refused now, not at the end
        check_output_path(args.json, "--json")
    if args.timeline:
        for suffix in (".png", ".html"):
            check_output_path(f"{args.timeline}{suffix}", "--timeline")
    if args.layer:
        from ..paper_layers import make_paper_input, make_paper_layer

        n_pe = args.pes or 64
        target = make_paper_layer(args.layer, n_pe=n_pe, seed=args.seed)
        x = load_array_file(args.input, "--input") if args.input else make_paper_input(args.layer, seed=args.seed)
    else:
        from ..model_file import load

        if not args.input:
            raise EIEInputError("simulating a model file needs --input x.npy")
        x = load_array_file(args.input, "--input")
        if str(args.file).endswith(".onnx"):  # a converted ONNX model: its EIE nodes are the simulated layers
            from ..onnx.session import InferenceSession

            target = InferenceSession(args.file)
        else:
            target = load(args.file)
        first = _first_layer(target)
        n_pe = args.pes or (first.matrix.n_pe if first is not None else 64)
    report = simulate(target, x, _config(args, n_pe), reencode=args.reencode)
    c = report.config
    print(f"EIE: {c.n_pe} PEs, {c.clock_mhz:g} MHz, FIFO {c.fifo_depth}, {c.sram_width}-bit SpMat SRAM, "
          f"{c.pointer_bits}-bit pointers; queue release: {c.queue_release}, pointer reads: {c.pointer_reads}, "
          f"output passes: {'yes' if c.output_passes else 'no'}")
    rows = report.rows()
    print(format_table(rows[:50]))
    if len(rows) > 50:
        print(f"... {len(rows) - 50} more layer runs (see --json)")
    t = report.total_dict()
    print(f"total: {t['cycles']} cycles = {t['time_us']:.2f} us (theoretical {t['theoretical_us']:.2f} us), "
          f"load efficiency {t['load_efficiency']:.3f}, energy {t['energy_uj']:.4f} uJ "
          f"({t['power_w'] * 1e3:.1f} mW), {t['frames_per_s']:,.0f} frames/s, {t['frames_per_j']:,.0f} frames/J")
    if any(r.calibrated for r in report.layers):
        print("note: layers without fixed-point parameters were calibrated on this input")
    if report.matches_kernel is False:
        print("WARNING: simulated outputs differ from the fixed16 kernel")
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}")
    if args.timeline:
        _timeline(target, x, report.config, args)
    return 0 if report.matches_kernel is not False else 1


def _timeline(target, x, config, args) -> None:
    from ..layer import EIELinear
    from .timeline import record_timeline

    first = target[0] if isinstance(target, (list, tuple)) and target else target
    if not isinstance(first, EIELinear):
        raise EIEInputError("--timeline draws a layer or a chain's first layer; this file holds a model "
                            "(use eie_runtime.hardware.timeline.record_timeline on one of its layers)")
    tl = record_timeline(first, x, config, reencode=args.reencode)
    for path in (tl.to_png(f"{args.timeline}.png"), tl.to_html(f"{args.timeline}.html")):
        print(f"wrote {path}")
