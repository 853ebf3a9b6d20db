"""A small numpy graph executor for converted ONNX models (core: no onnx, no torch).

A :class:`GraphModel` is a list of :class:`Node` in topological order over
named tensors. The compute-heavy nodes are EIE layers (:data:`LAYER_OPS`):

- ``Linear``: ``y = x W^T + b`` over the last axis of ``x`` with an
  :class:`~eie_runtime.EIELinear` (attribute ``layer``: index into ``layers``);
- ``DenseLinear``: the same with exact float32 weights kept as constants
  (attributes ``weight``, ``bias``). Only the lossless conversion mode makes
  these: a 4-bit codebook cannot hold arbitrary weights;
- ``LSTM``: ONNX's LSTM node (any direction, ``layout`` 0/1, initial states,
  sequence lengths) run by :class:`~eie_runtime.lstm.EIELSTMCore`, one EIE
  matrix per direction (attribute ``cells``: layer indices, or
  ``dense_cells``: constant names in lossless mode).

Everything else is one of :data:`ELEMENTARY_OPS`, with ONNX's semantics at the
graph's ``opset``. Models save to ``.eie`` (kind ``"graph"``): the graph in the
JSON header, layers and constants as safetensors tensors; loading validates
the graph before anything runs.

Modules: ``ir`` (nodes, input specs, dtypes), ``ops`` (the op registry and
the elementary ops), ``layer_ops`` (the layer ops), ``checks`` (structural
validation), ``model`` (:class:`GraphModel`), ``files`` (loading ``.eie``).
"""

from .checks import check_feed, check_graph
from .files import model_from_file
from .ir import GRAPH_VERSION, ONNX_DTYPES, DenseCell, Node, TensorSpec
from .layer_ops import LAYER_OPS
from .model import GraphModel
from .ops import ELEMENTARY_OPS, OPS, OpSpec, elementary_op, run_elementary

__all__ = ["GraphModel", "Node", "TensorSpec", "DenseCell", "GRAPH_VERSION", "ONNX_DTYPES", "ELEMENTARY_OPS",
           "LAYER_OPS", "OPS", "OpSpec", "elementary_op", "run_elementary", "check_graph", "check_feed",
           "model_from_file"]
