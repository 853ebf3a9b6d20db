"""``ExecLayout``: how one layer runs on a CPU, derived from its stored :class:`InterleavedCSC`."""

from __future__ import annotations

from ..format import InterleavedCSC
from ..kernel_costs import KernelCosts, current_with_source as _current_costs
from .choice import Chooser
from .column_scatter import ColumnScatter
from .fixed16 import Fixed16Plans
from .panel_batch import PanelBatch
from .row_gather import RowGather
from .rows import Rows, default_blocks
from .sliced_ell import SlicedEll


class ExecLayout(Chooser):
    """The execution strategies of one :class:`InterleavedCSC`, each call run by the one that
    ``Chooser``'s rules pick (``run_float32``, ``run_fixed16``).

    Construction reads only what every call needs to choose (``rows``: row
    counts and row blocks, from one walk of the stored entries); a strategy's
    layout arrays are built by the first call that runs it (thread-safe), so
    run-time memory is what the calls made so far needed (``nbytes``).

    Parameters
    ----------
    matrix : InterleavedCSC
        A validated stored matrix; the layout keeps a reference to it so a
        layer can tell when its matrix was replaced.
    n_blocks : int, optional
        Row blocks (parallel tasks); default: Numba's thread count.
    sliced_ell : bool, optional
        Use the sliced ELL: None (default) where the host has AVX-512 and
        the layer's rows fill its slots well enough to beat the gather; True
        always (AVX-512 hosts only); False never (float32 vectors then take
        the scatter and the gather).
    panel : int, optional
        Columns per panel of the batch kernels (1 to 4096); default
        ``kernels.panel_batch.panel_width`` of the layer's shape and density.
    costs : KernelCosts, optional
        The per-thread kernel costs that decide whether the sliced ELL is
        kept and from how many non-zero activations a call takes it; default
        ``kernel_costs.current()`` (``use()``, ``$EIE_KERNEL_COSTS``, this
        CPU's self-calibrated costs, or the defaults; ``costs_source`` says
        which).
    """

    def __init__(self, matrix: InterleavedCSC, n_blocks: int | None = None, sliced_ell: bool | None = None,
                 panel: int | None = None, costs: KernelCosts | None = None):
        if costs is None:
            costs, self.costs_source = _current_costs()
        elif not isinstance(costs, KernelCosts):
            raise TypeError(f"costs must be a KernelCosts, got {type(costs).__name__}")
        else:
            self.costs_source = "given to ExecLayout"
        if sliced_ell and not SlicedEll.available():
            raise ValueError(f"sliced_ell=True needs Numba compiling for a CPU with {', '.join(SlicedEll.REQUIRES)}")
        self.costs = costs
        self.matrix = matrix
        self.rows = rows = Rows.of(matrix, n_blocks or default_blocks())
        self.shape = rows.shape
        self.nnz = rows.nnz
        self.row_gather = RowGather(matrix, rows, costs)
        self.column_scatter = ColumnScatter(matrix, rows, costs, self.row_gather)
        self.sliced_ell = SlicedEll(matrix, rows, costs, self.row_gather)
        self.panel_batch = PanelBatch(matrix, rows, costs, self.row_gather, panel)
        self.fixed16 = Fixed16Plans(matrix, rows)
        self._init_choice(sliced_ell)

    @property
    def strategies(self) -> tuple:
        return self.column_scatter, self.row_gather, self.sliced_ell, self.panel_batch

    def describe(self, density: float | None = None, batches=(8, 64)) -> list[dict]:
        """Which kernel runs each kind of call and its layout's bytes per stored entry, without running or
        building anything: per mode, single vectors (by range of non-zero counts, or at ``density``) and
        batches of each size in ``batches`` (``execution.describe``). ``costs_source`` says whose costs chose."""
        from .describe import describe

        return describe(self, density, batches)

    # ---------------------------------------------------------------- memory
    def nbytes_by_strategy(self) -> dict:
        """Bytes held per part: ``rows`` (built at construction), each strategy's layout arrays as far as
        calls have built them, and ``fixed16`` (every row's sum of |weight|, after a fixed16 call)."""
        parts = {"rows": self.rows.nbytes()}
        parts.update((s.name, s.nbytes()) for s in self.strategies)
        parts[self.fixed16.name] = self.fixed16.nbytes()
        return parts

    def nbytes(self) -> int:
        """Bytes of every run-time array built so far."""
        return sum(self.nbytes_by_strategy().values())
