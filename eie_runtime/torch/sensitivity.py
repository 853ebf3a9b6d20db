"""Sensitivity analysis and per-layer densities (Distiller's idea): how much each module tolerates pruning.

``sensitivity`` compresses one module at a time at each density and measures
the model's agreement with the dense model; ``plan`` picks a density per
module for a quality budget (output cosine) or a size budget (fraction of
weights kept), then checks the choice on the real compressed model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable, Iterable

from torch import nn

from ..atomic import atomic_write_bytes
from ..errors import EIEInputError
from ..tables import format_table
from .distillation import Agreement, agreement
from .model import compress
from .targets import find_targets
from .threads import keep_torch_threads

DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def _size(module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if "weight" in n)


@dataclass
class Sensitivity:
    """Per module and density: the whole model's agreement when only that module is compressed."""

    rows: list[dict]  # module, weights, density, cosine, rel_error, top1
    bits: int = 4

    def modules(self) -> list[str]:
        return list(dict.fromkeys(r["module"] for r in self.rows))

    def curve(self, module: str) -> list[tuple[float, float]]:
        """(density, cosine) of one module, densities ascending."""
        return sorted((r["density"], r["cosine"]) for r in self.rows if r["module"] == module)

    def __str__(self) -> str:
        dens = sorted({r["density"] for r in self.rows})
        table = [{"module": m, **{f"d={d:g}": f"{c:.4f}" for d, c in self.curve(m)}} for m in self.modules()]
        return f"output cosine to dense, one module compressed at a time ({self.bits} bits; densities {dens}):\n" + \
            format_table(table)

    def to_png(self, path: str) -> None:
        """Cosine against density, one line per module (matplotlib)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m in self.modules():
            d, c = zip(*self.curve(m))
            ax.plot(d, [1 - v for v in c], marker="o", label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("density of the one compressed module")
        ax.set_ylabel("1 - output cosine to dense")
        ax.set_title(f"Sensitivity to pruning + {self.bits}-bit sharing, per module")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())


@keep_torch_threads
def sensitivity(model: nn.Module, inputs: Iterable, *, densities=DENSITIES, bits: int = 4, init: str = "linear",
                filter_fn: Callable | None = None, progress: bool = True) -> Sensitivity:
    """Compress each supported module alone at each of ``densities`` and measure the agreement on ``inputs``."""
    items = list(inputs)
    if not items:
        raise EIEInputError("sensitivity needs at least one input")
    dens = sorted({float(d) for d in densities})
    targets = find_targets(model, filter_fn=filter_fn)
    if not targets:
        raise EIEInputError("the model has no modules to compress")
    jobs = [(t, d) for t in targets for d in dens]
    it = jobs
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(jobs, desc="sensitivity", unit="run")
    rows = []
    for t, d in it:
        small = compress(model, density=d, bits=bits, init=init, filter_fn=lambda m, n, name=t.name: n == name)
        a = agreement(model, small, items)
        rows.append({"module": t.name, "weights": _size(t.module), "density": d, "cosine": a.cosine,
                     "rel_error": a.rel_error, "top1": a.top1})
    return Sensitivity(rows, bits)


@dataclass
class Plan:
    """Per-module densities chosen by :func:`plan`, with what they keep and how the compressed model agrees."""

    density: dict[str, float]
    kept: float  # fraction of the planned modules' weights kept
    predicted_cosine: float  # from the single-module losses, assumed to add up
    achieved: Agreement | None = None
    sensitivity: Sensitivity | None = field(default=None, repr=False)

    def __str__(self) -> str:
        rows = [{"module": m, "density": f"{d:g}"} for m, d in self.density.items()]
        got = f", achieved cosine {self.achieved.cosine:.4f}" if self.achieved else ""
        return (format_table(rows) + f"\nweights kept {100 * self.kept:.1f}%, predicted cosine "
                f"{self.predicted_cosine:.4f}{got}")


@keep_torch_threads
def plan(model: nn.Module, inputs: Iterable, *, target: float, budget: str = "quality", bits: int = 4,
         densities=DENSITIES, init: str = "linear", filter_fn: Callable | None = None,
         sens: Sensitivity | None = None, progress: bool = True) -> Plan:
    """Choose a density per module: the smallest model whose cosine stays >= ``target`` (``budget="quality"``),
    or the best-agreeing model keeping at most ``target`` of the weights (``budget="size"``).

    Greedy on the sensitivity table (computed unless ``sens`` is given): every
    module starts at its highest density, and the step down that saves the
    most weights per unit of lost cosine goes first, the single-module losses
    (1 - cosine) taken to add up. The plan is then compressed and measured
    (``Plan.achieved``); pass it as ``density=plan.density`` to ``compress`` or ``distill``.
    """
    if budget not in ("quality", "size"):
        raise EIEInputError(f"budget must be 'quality' or 'size', got {budget!r}")
    if not 0.0 < float(target) <= 1.0:
        raise EIEInputError(f"target must be in (0, 1], got {target!r}")
    items = list(inputs)
    sens = sens or sensitivity(model, items, densities=densities, bits=bits, init=init, filter_fn=filter_fn,
                               progress=progress)
    curves = {m: sens.curve(m) for m in sens.modules()}
    sizes = {r["module"]: r["weights"] for r in sens.rows}
    total = sum(sizes.values())
    level = {m: len(c) - 1 for m, c in curves.items()}  # index into the ascending densities
    loss = lambda m: 1.0 - curves[m][level[m]][1]
    kept = lambda: sum(sizes[m] * curves[m][level[m]][0] for m in curves) / total
    lost = lambda: sum(max(0.0, loss(m)) for m in curves)
    while True:
        best, best_score = None, -1.0
        for m, c in curves.items():
            if level[m] == 0:
                continue
            saved = sizes[m] * (c[level[m]][0] - c[level[m] - 1][0])
            extra = max(1e-9, (1.0 - c[level[m] - 1][1]) - (1.0 - c[level[m]][1]))
            if budget == "quality" and lost() + extra > 1.0 - target:
                continue
            if saved / extra > best_score:
                best, best_score = m, saved / extra
        if best is None or (budget == "size" and kept() <= target):
            break
        level[best] -= 1
    chosen = {m: curves[m][level[m]][0] for m in curves}
    small = compress(model, density=chosen, bits=bits, init=init, filter_fn=lambda m, n: n in chosen)
    return Plan(chosen, kept(), 1.0 - lost(), agreement(model, small, items), sens)
