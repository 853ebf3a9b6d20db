"""Compress LSTM weights into an :class:`~eie_runtime.lstm.EIELSTMCore`.

The one place both front ends (torch, ONNX) build LSTM matrices, so the same
weights with the same settings compress to the same EIE model whichever door
they came through. Weights arrive in torch's layout and gate order (i, f, g, o);
the ONNX importer permutes first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eie_runtime.errors import EIEInputError
from eie_runtime.format import InterleavedCSC
from eie_runtime.layer import EIELinear, resolve_n_pe
from eie_runtime.lstm import EIELSTMCore

from .compress import as_weight_matrix, check_n_pe, quantize_matrix


@dataclass
class LSTMDirectionWeights:
    """One layer/direction in torch's layout: w_ih (4H, I), w_hh (4H, P|H), biases (4H,), w_hr (P, H) or None."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None = None
    b_hh: np.ndarray | None = None
    w_hr: np.ndarray | None = None


def lstm_matrix(w: LSTMDirectionWeights) -> np.ndarray:
    """The (4H, I + P + 1) matrix over [x_t; h_{t-1}; 1] of one layer/direction."""
    w_ih = as_weight_matrix(w.w_ih, "w_ih")
    w_hh = as_weight_matrix(w.w_hh, "w_hh")
    rows = w_ih.shape[0]
    if w_hh.shape[0] != rows or rows % 4:
        raise EIEInputError(f"LSTM w_ih has {rows} rows and w_hh {w_hh.shape[0]}; both must be 4 * hidden_size")
    bias = np.zeros(rows, dtype=np.float64)
    for name, b in (("b_ih", w.b_ih), ("b_hh", w.b_hh)):
        if b is not None:
            b = np.asarray(b.detach().cpu().numpy() if hasattr(b, "detach") else b, dtype=np.float64)
            if b.shape != (rows,) or not np.isfinite(b).all():
                raise EIEInputError(f"LSTM {name} must be {rows} finite values, got shape {b.shape}")
            bias += b
    return np.concatenate([w_ih, w_hh, bias[:, None]], axis=1).astype(np.float32)


LSTM_BIAS = ("shared", "dense")


def check_lstm_bias(bias) -> str:
    if bias not in LSTM_BIAS:
        raise EIEInputError(f"lstm_bias must be one of {LSTM_BIAS}, got {bias!r}")
    return bias


def compress_lstm(weights: list[list[LSTMDirectionWeights]], *, density: float | list, bits: int | list = 4,
                  n_pe: int = 64, seed: int = 0, name: str = "lstm", init: str = "linear",
                  bias: str = "shared") -> EIELSTMCore:
    """Prune and share every layer/direction's matrix (and projection) separately.

    ``density`` / ``bits`` may be one value or a list with one value per layer;
    ``init`` is the codebook initialisation (``weight_sharing.INITS``).
    ``bias="shared"`` (the paper's NT-LSTM) prunes and shares the bias column
    with the weights; ``bias="dense"`` keeps ``b_ih + b_hh`` exact as the cell
    layer's float32 bias (the accumulators' starting value, DESIGN.md), the
    matrix's last column then holding no entries.
    """
    n_pe = check_n_pe(n_pe)
    n_layers = len(weights)
    dens = density if isinstance(density, (list, tuple)) else [density] * n_layers
    bts = bits if isinstance(bits, (list, tuple)) else [bits] * n_layers
    if len(dens) != n_layers or len(bts) != n_layers:
        raise EIEInputError(f"density/bits lists need one value per LSTM layer ({n_layers})")

    def quantize(mat, l, d, is_proj, lname):
        return quantize_matrix(mat, density=dens[l], bits=bts[l], seed=seed, init=init)

    return assemble_lstm(weights, quantize, n_pe=n_pe, name=name, bias=bias)


def assemble_lstm(weights: list[list[LSTMDirectionWeights]], quantize, *, n_pe: int, name: str,
                  bias: str = "shared") -> EIELSTMCore:
    """Encode every layer/direction's matrix (and projection) with ``quantize``.

    ``quantize(matrix, layer, direction, is_proj, layer_name) -> (codes, codebook)``
    decides the values: fresh pruning and sharing (``compress_lstm``) or the
    codebooks a fine-tuning run kept. The matrices and names are built here
    only, so every path lays an LSTM out the same way. ``bias="dense"`` moves
    the bias column out of the matrix into the cell layer's bias.
    """
    check_lstm_bias(bias)
    suffix = ("", "_reverse")
    cells, projs = [], []
    hidden = None
    for l, dirs in enumerate(weights):
        cell_row, proj_row = [], []
        for d, w in enumerate(dirs):
            mat = lstm_matrix(w)
            hidden = mat.shape[0] // 4
            lname = f"{name}.l{l}{suffix[d]}"
            cell_bias = None
            if bias == "dense":
                cell_bias = mat[:, -1].copy()
                mat[:, -1] = 0.0
            codes, codebook = quantize(mat, l, d, False, lname)
            cell_row.append(EIELinear(InterleavedCSC.from_codes(codes, codebook, resolve_n_pe(n_pe, codes.shape[0]), name=lname), bias=cell_bias,
                                      name=lname))
            if w.w_hr is not None:
                pname = lname + ".proj"
                codes, codebook = quantize(as_weight_matrix(w.w_hr, "w_hr"), l, d, True, pname)
                proj_row.append(EIELinear(InterleavedCSC.from_codes(codes, codebook, resolve_n_pe(n_pe, codes.shape[0]), name=pname), name=pname))
        cells.append(cell_row)
        if proj_row:
            projs.append(proj_row)
    return EIELSTMCore(cells, hidden, proj=projs or None)
