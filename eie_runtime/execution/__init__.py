"""How a layer runs on a CPU: execution strategies over layouts built on first use, and the choice among them.

The stored format (1 byte per entry, relative row indices, padding entries)
is what the hardware reads; decoding it on every call costs more than the
multiply-adds, so each strategy derives its own layout of the non-zeros,
once, when a call first needs it:

- ``ColumnScatter`` (EIE's column scatter, sparse activations): a blocked CSC;
- ``RowGather`` (dense activations; fixed16 batches without AVX512BW): a CSR;
- ``SlicedEll`` (AVX-512 hosts: single vectors with many non-zeros, small
  float32 batches): 16-row groups, 16-lane steps;
- ``PanelBatch`` (batches): panel-major entries.

``ExecLayout`` holds one of each and runs every call on the one that the
``Chooser`` rules (``choice``) pick, from the input's non-zero count and the
kernel costs of ``eie_runtime.kernel_costs``.
"""

from .choice import (FIXED16_CSR_SINGLE_MAX_BATCH, FIXED16_SINGLE_MAX_BATCH, GATHER_DENSITY, SINGLE_VECTOR_MAX_BATCH,
                     SLICED_ELL_MAX_BATCH, Chooser, EllChoice)
from .column_scatter import BY_CODE_MAX_ROWS, ColumnScatter
from .fixed16 import Fixed16Plan, Fixed16Plans, fit16_amax, term_bound
from .layout import ExecLayout
from .panel_batch import PanelBatch
from .row_gather import RowGather
from .rows import ROW_ALIGN, Rows, balanced_bounds
from .sliced_ell import SlicedEll
from .strategy import Strategy

__all__ = [
    "ExecLayout", "Chooser", "EllChoice", "Strategy", "ColumnScatter", "RowGather", "SlicedEll", "PanelBatch",
    "Fixed16Plan", "Fixed16Plans", "Rows", "balanced_bounds", "fit16_amax", "term_bound", "ROW_ALIGN",
    "BY_CODE_MAX_ROWS", "GATHER_DENSITY", "SINGLE_VECTOR_MAX_BATCH", "SLICED_ELL_MAX_BATCH",
    "FIXED16_SINGLE_MAX_BATCH", "FIXED16_CSR_SINGLE_MAX_BATCH",
]
