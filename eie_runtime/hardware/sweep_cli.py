"""``eie sweep``: workloads x a grid of hardware configurations, to a table (and plots)."""

from __future__ import annotations

from dataclasses import fields

from ..errors import EIEInputError
from .config import HardwareConfig

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def register_sweep(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="design-space sweep: workloads x hardware configurations, cached, in parallel",
        description="Simulate every workload on every combination of the grid's values and write one row per "
                    "workload x configuration (cycles, time, load efficiency, energy by component, SRAM traffic).")
    p.add_argument("workloads", nargs="+",
                   help="Table III layer names (alex7, alex7@3 for seed 3) or model.eie:input.npy")
    p.add_argument("--grid", nargs="+", default=[], metavar="FIELD=V1,V2",
                   help="HardwareConfig fields and their values, e.g. fifo_depth=1,2,4,8 n_pe=32,64 "
                        f"(fields: {', '.join(f.name for f in fields(HardwareConfig))})")
    p.add_argument("--authors-model", action="store_true",
                   help="start from the authors' simulator's modelling choices instead of the paper's text")
    p.add_argument("--out", metavar="PATH", help="write the table: .csv or .json")
    p.add_argument("--plots", metavar="DIR", help="also draw the sweep's plots into DIR")
    p.add_argument("--processes", type=int, default=None, help="local worker processes (default: CPU count)")
    p.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster (ray.init(address); 'local' starts one)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache", metavar="DIR", help="result cache folder (default: $EIE_SWEEP_CACHE or the "
                                                      "user's cache folder)")
    cache.add_argument("--no-cache", action="store_true", help="run everything, store nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def parse_grid(items: list[str]) -> dict:
    """``["fifo_depth=1,2", "bypass=no"]`` -> ``{"fifo_depth": [1, 2], "bypass": [False]}``, typed by field."""
    defaults = HardwareConfig().to_dict()
    grid = {}
    for item in items:
        name, eq, values = item.partition("=")
        if not eq or not values:
            raise EIEInputError(f"--grid {item!r}: expected FIELD=V1,V2,...")
        if name not in defaults:
            raise EIEInputError(f"--grid {item!r}: HardwareConfig has no field {name!r} "
                                f"(fields: {', '.join(defaults)})")
        grid[name] = [_value(name, v.strip(), defaults[name]) for v in values.split(",")]
    return grid


def _value(name: str, text: str, default):
    try:
        if isinstance(default, bool):
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError
            return text.lower() in _TRUE
        return type(default)(text)
    except ValueError:
        raise EIEInputError(f"--grid {name}: {text!r} is not a {type(default).__name__}") from None


def _run(args) -> int:
    from ..tables import format_table
    from .sweeps import sweep

    base = HardwareConfig.authors_simulator() if args.authors_model else HardwareConfig()
    cache = False if args.no_cache else (args.cache or True)
    table = sweep(args.workloads, parse_grid(args.grid) or None, base=base, processes=args.processes,
                  ray_address=args.ray, cache=cache, progress=not args.quiet)
    keys = table.varying()
    shown = []
    for r in table.rows[:60]:
        row = {"workload": r["workload"], **{k: r[k] for k in keys}}
        if r.get("error"):
            row["cycles"] = "error: " + r["error"]
        else:
            row.update(cycles=r["cycles"], time_us=f"{r['time_us']:.2f}", load_eff=f"{r['load_efficiency']:.3f}",
                       energy_uj=f"{r['energy_uj']:.3f}", spmat_kb=f"{r['spmat_bytes'] / 1024:.1f}")
        shown.append(row)
    print(format_table(shown))
    if len(table) > 60:
        print(f"... {len(table) - 60} more rows (see --out)")
    print(f"{len(table)} runs: {table.computed} simulated, {table.cached} from the cache, {table.seconds:.1f} s")
    if args.out:
        (table.to_json if args.out.endswith(".json") else table.to_csv)(args.out)
        print(f"wrote {args.out}")
    if args.plots:
        from .plots import plot_sweep

        for path in plot_sweep(table, args.plots):
            print(f"wrote {path}")
    errors = sum(1 for r in table if r.get("error"))
    if errors:
        print(f"note: {errors} configuration(s) could not run (see the error column)")
    return 0
