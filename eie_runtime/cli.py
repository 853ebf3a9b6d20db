"""The ``eie`` command line. Subcommands register themselves in ``COMMANDS``."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import EIEError
from .tables import format_table


def _inspect(args) -> int:
    from .model_file import read_model_file

    if str(args.file).endswith(".onnx"):  # a converted ONNX model: its EIE nodes are the layers
        if args.kernels:
            raise EIEError(f"--kernels lists the CPU kernels of a .eie model file's layers; {args.file} is ONNX")
        from .onnx.cli import inspect_rows

        rows = inspect_rows(args.file)
        if args.json:
            print(json.dumps({"kind": "onnx", "layers": rows}, indent=2))
            return 0
        print(f"{args.file}: ONNX with {len(rows)} EIE layer matri(ces)")
        print(format_table(rows))
        return 0

    mf = read_model_file(args.file)
    if args.kernels:
        return _inspect_kernels(args, mf)
    rows = []
    for i, layer in enumerate(mf.layers):
        s = layer.matrix.stats()
        rows.append({
            "layer": layer.name or f"layer {i}", "shape": f"{s.shape[0]}x{s.shape[1]}", "n_pe": s.n_pe,
            "density": round(s.density, 4), "bits": layer.matrix.bits, "stored": s.stored_entries,
            "padding": s.padding_entries, "bytes": s.nbytes, "ratio": round(s.compression_ratio, 1),
            "ptr16": "yes" if s.fits_pointer_bits else "NO", "act": layer.activation or "-",
            "fixed16": "-" if layer.fixed is None else f"{layer.fixed.in_frac}/{layer.fixed.w_frac}/{layer.fixed.out_frac}",
        })
    if args.json:
        print(json.dumps({"kind": mf.kind, "layers": rows}, indent=2))
        return 0
    print(f"{args.file}: kind={mf.kind}, {len(rows)} EIE layer(s)")
    print(format_table(rows))
    return 0


def _inspect_kernels(args, mf) -> int:
    """Per layer, mode and kind of input: the kernel that runs and its layout's bytes per stored entry."""
    from . import kernel_costs

    if args.density is not None and not 0.0 <= args.density <= 1.0:
        raise EIEError(f"--density must be a fraction of non-zero activations in 0..1, got {args.density}")
    costs, source = kernel_costs.current_with_source()
    layers = []
    for i, layer in enumerate(mf.layers):
        ex = layer.execution_layout()
        layers.append({"layer": layer.name or f"layer {i}", "shape": list(ex.shape), "costs_source": ex.costs_source,
                       "kernels": ex.describe(density=args.density)})
    if args.json:
        print(json.dumps({"kind": mf.kind, "costs_source": source, "costs": costs.to_dict(), "layers": layers},
                         indent=2))
        return 0
    print(f"{args.file}: kind={mf.kind}, {len(layers)} EIE layer(s); kernel costs: {source}")
    for entry in layers:
        m, k = entry["shape"]
        print(f"\n{entry['layer']} ({m}x{k})")
        print(format_table(entry["kernels"]))
    return 0


def _cache(args) -> int:
    from pathlib import Path

    from .kernels import jit

    roots = (jit.PACKAGE_DIR, Path(__file__).resolve().parent)  # kernels/ and eie_runtime/ (the cycle model)
    folders = jit.cache_folders(roots)
    if args.action == "clear":
        freed = jit.clear_cache(roots)
        print(f"removed {len(folders)} compiled-kernel folder(s), {freed / 1e6:.1f} MB")
        return 0
    print(f"current key: {jit.cache_key()} (kernel sources, Numba/llvmlite/Python versions, target CPU)")
    for folder in folders:
        size = sum(f.stat().st_size for f in folder.glob("*") if f.is_file())
        print(f"{folder}  {size / 1e6:.1f} MB{'  (current)' if folder.name.endswith(jit.cache_key()) else ''}")
    if not folders:
        print("(no compiled kernels cached yet)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eie", description="EIE compressed-model tools")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("inspect", help="per-layer summary of a .eie file")
    q.add_argument("file")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.add_argument("--kernels", action="store_true",
                   help="per layer, mode and input: which CPU kernel runs, its layout's bytes per stored entry, and "
                        "where the kernel costs come from (defaults, this CPU's self-calibration, EIE_KERNEL_COSTS)")
    q.add_argument("--density", type=float, metavar="D",
                   help="with --kernels: single vectors with this fraction of non-zero activations only "
                        "(default: every range of non-zero counts)")
    q.set_defaults(func=_inspect)
    c = sub.add_parser("cache", help="list (or clear) the compiled-kernel cache folders")
    c.add_argument("action", nargs="?", choices=["list", "clear"], default="list")
    c.set_defaults(func=_cache)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


def _extra_commands():
    """Subcommands from other modules, each a `register(subparsers)` function."""
    out = []
    for mod, fn in (("eie_runtime.hardware.cli", "register"), ("eie_runtime.onnx.cli", "register")):
        try:
            module = __import__(mod, fromlist=[fn])
        except ModuleNotFoundError as exc:
            if exc.name and mod.startswith(exc.name):  # that front end is not built yet
                continue
            raise
        out.append(getattr(module, fn))
    return out


_EXTRA_COMMANDS: list = []


def main(argv=None) -> int:
    _EXTRA_COMMANDS[:] = _extra_commands()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EIEError as exc:
        print(f"eie {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"eie {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
