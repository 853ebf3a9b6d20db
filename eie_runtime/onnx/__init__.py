"""The ONNX front end: convert an ONNX model's layers into EIE nodes, run it with onnxruntime.

>>> import eie_runtime.onnx as eonnx
>>> eonnx.convert_onnx("bert.onnx", "bert_eie.onnx", density=0.1)    # the same graph, EIE-domain layers
>>> sess = eonnx.InferenceSession("bert_eie.onnx", mode="float32")
>>> outputs = sess.run(None, {"input_ids": ids, "attention_mask": mask})

The older route below (a numpy graph executor over ``.eie`` graph files) stays for the ops it covers:

>>> import eie_runtime.onnx as eonnx, eie_runtime as eie
>>> model = eonnx.convert("mlp.onnx", density=0.1, bits=4, n_pe=64,
...                       layer_overrides={"/fc3/Gemm": 0.25})
>>> y = model(x)                       # numpy in, numpy out; model.run({"x": x}) for several inputs
>>> eie.save(model, "mlp.eie")         # runs later with neither torch nor onnx imported
>>> eonnx.export("mlp.eie", "mlp_dense.onnx")   # dense ONNX with the pruned-and-shared weights

Modules: ``reader`` (reading and checking ONNX files), ``importer`` (ONNX ->
:class:`~eie_runtime.graph.GraphModel`), ``exporter`` (back to dense ONNX),
``backend`` (an ``onnx.backend`` Backend for onnx's conformance tests),
``cli`` (``eie convert``, ``eie run``, ``eie export``). They import onnx at
the top; this package and ``cli`` do not, so ``eie run`` and loading a saved
model work without onnx installed.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write_bytes
from ..errors import EIEFormatError
from ..graph import GraphModel
from ..model_file import load

__all__ = ["convert", "convert_onnx", "export", "GraphModel", "InferenceSession"]


def __getattr__(name):
    if name == "InferenceSession":  # imports onnx and onnxruntime, so only when asked for
        from .session import InferenceSession

        return InferenceSession
    raise AttributeError(name)


def convert_onnx(model, path=None, *, density: float = 0.1, bits: int = 4, n_pe: int = 64,
                 layer_overrides: dict | None = None, seed: int = 0, lossless: bool = False,
                 calibrate: dict | None = None, progress: bool = False, init: str = "linear",
                 lstm_bias: str = "shared"):
    """Convert an ONNX model into the same ONNX graph with EIE-domain nodes (docs/onnx.md).

    Every Gemm, MatMul with a constant weight (a following Add folded) and LSTM,
    also inside If/Loop/Scan bodies, becomes an ``ai.eie`` node holding the
    compressed arrays (1 byte per stored entry); everything else stays. Run the
    result with :class:`InferenceSession`. ``calibrate`` (input name -> sample
    batch) stores fixed16 parameters so that ``mode="fixed16"`` runs. ``init``: the
    codebook initialisation (linear, density, quantile, random); ``lstm_bias``:
    "shared" (pruned and shared with the weights) or "dense" (LSTM/GRU biases
    kept exact in float32). Writes
    ``path`` (atomically) when given; returns ``(onnx.ModelProto, summary rows)``.
    """
    from .converter import convert_model

    proto, rows = convert_model(model, density=density, bits=bits, n_pe=n_pe, seed=seed,
                                layer_overrides=layer_overrides, lossless=lossless, progress=progress,
                                init=init, lstm_bias=lstm_bias)
    if calibrate:
        from .session import InferenceSession

        sess = InferenceSession(proto)
        sess.calibrate(calibrate)
        proto = sess.model
    if path is not None:
        atomic_write_bytes(path, proto.SerializeToString())
    return proto, rows


def convert(model, *, density: float = 0.1, bits: int = 4, n_pe: int = 64, layer_overrides: dict | None = None,
            seed: int = 0, lossless: bool = False, progress: bool = False) -> GraphModel:
    """Compress an ONNX model's Gemm/MatMul/LSTM layers into EIE layers.

    Parameters
    ----------
    model : str, Path, bytes or onnx.ModelProto
    density : float
        Fraction of each layer's weights kept by magnitude pruning.
    bits : int
        Codebook index width (1..4): ``2**bits - 1`` shared values per layer.
    n_pe : int
        Processing elements the layers are interleaved over.
    layer_overrides : dict, optional
        Node name -> density, or -> ``{"density": d, "bits": b}``.
    seed : int
        Seed of the weight sharing (the same seed as the torch front end gives the same layers).
    lossless : bool
        Keep exact float32 weights (no pruning, no sharing); such models run in float32 mode only.
    progress : bool
        Show a progress bar over layers.

    Returns
    -------
    GraphModel
        Call it, ``.run(feeds)``, ``eie_runtime.save(model, path)``.
    """
    from .importer import import_onnx  # onnx is imported here, not with the package

    return import_onnx(model, density=density, bits=bits, n_pe=n_pe, seed=seed, layer_overrides=layer_overrides,
                       lossless=lossless, progress=progress)


def export(model, path=None):
    """Write a converted model (a GraphModel or a ``.eie`` path) as dense ONNX.

    Returns the ``onnx.ModelProto``; also writes it (atomically) to ``path`` if given.
    """
    from .exporter import export_graph  # onnx is imported here, not with the package

    if isinstance(model, (str, Path)):
        src = model
        model = load(model)
        if not isinstance(model, GraphModel):
            raise EIEFormatError(f"{src}: holds {type(model).__name__}, not a converted graph model; "
                                 "only models from `eie convert` / eie_runtime.onnx.convert export to ONNX")
    proto = export_graph(model)
    if path is not None:
        atomic_write_bytes(path, proto.SerializeToString())
    return proto
