"""Compress GRU weights into an :class:`~eie_runtime.gru.EIEGRUCore`.

The one place both front ends (torch, ONNX) build GRU matrices. Weights arrive
in torch's layout and gate order (r, z, n); the ONNX importer permutes ONNX's
(z, r, h) first. The three matrices per layer/direction and where each bias
goes are described in ``eie_runtime/gru.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eie_runtime.errors import EIEInputError
from eie_runtime.format import InterleavedCSC
from eie_runtime.gru import EIEGRUCore
from eie_runtime.layer import EIELinear, resolve_n_pe

from .compress import as_weight_matrix, check_n_pe, quantize_matrix
from .lstm import LSTM_BIAS
from .weight_sharing import check_init

MATRIX_NAMES = ("x", "hrz", "hn")


@dataclass
class GRUDirectionWeights:
    """One layer/direction in torch's layout: w_ih (3H, I), w_hh (3H, H), biases (3H,) or None."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None = None
    b_hh: np.ndarray | None = None


def _bias(b, rows: int, name: str) -> np.ndarray:
    if b is None:
        return np.zeros(rows, dtype=np.float64)
    b = np.asarray(b.detach().cpu().numpy() if hasattr(b, "detach") else b, dtype=np.float64)
    if b.shape != (rows,) or not np.isfinite(b).all():
        raise EIEInputError(f"GRU {name} must be {rows} finite values, got shape {b.shape}")
    return b


def gru_matrices(w: GRUDirectionWeights, linear_before_reset: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(w_x (3H, I + 1), w_hrz (2H, H), w_hn (H, H + 1))`` of one layer/direction, float32."""
    w_ih = as_weight_matrix(w.w_ih, "w_ih")
    w_hh = as_weight_matrix(w.w_hh, "w_hh")
    rows = w_ih.shape[0]
    if rows % 3 or w_hh.shape != (rows, rows // 3):
        raise EIEInputError(f"GRU w_ih has {rows} rows and w_hh shape {w_hh.shape}; expected (3H, I) and (3H, H)")
    h = rows // 3
    b_ih, b_hh = _bias(w.b_ih, rows, "b_ih"), _bias(w.b_hh, rows, "b_hh")
    bx = b_ih.copy()
    bx[:2 * h] += b_hh[:2 * h]
    bn = np.zeros(h, dtype=np.float64)
    if linear_before_reset:
        bn += b_hh[2 * h:]
    else:
        bx[2 * h:] += b_hh[2 * h:]
    w_x = np.concatenate([w_ih, bx[:, None]], axis=1).astype(np.float32)
    w_hn = np.concatenate([w_hh[2 * h:], bn[:, None]], axis=1).astype(np.float32)
    return w_x, np.ascontiguousarray(w_hh[:2 * h], dtype=np.float32), w_hn


def check_gru_bias(bias) -> str:
    if bias not in LSTM_BIAS:
        raise EIEInputError(f"GRU bias must be one of {LSTM_BIAS}, got {bias!r}")
    return bias


def compress_gru(weights: list[list[GRUDirectionWeights]], *, density: float | list, bits: int | list = 4,
                 n_pe: int = 64, seed: int = 0, name: str = "gru", linear_before_reset: bool = True,
                 init: str = "linear", bias: str = "shared") -> EIEGRUCore:
    """Prune and share every layer/direction's three matrices separately.

    ``density`` / ``bits`` may be one value or a list with one value per layer;
    ``init`` is the codebook initialisation (``weight_sharing.INITS``).
    ``bias="shared"`` prunes and shares the bias columns of ``w_x`` and ``w_hn``
    with their weights (as ``compress_lstm`` does by default); ``bias="dense"``
    keeps them exact as those layers' float32 biases (the accumulators'
    starting value, DESIGN.md), the columns then holding no entries.
    """
    n_pe = check_n_pe(n_pe)
    check_init(init)
    check_gru_bias(bias)
    n_layers = len(weights)
    dens = density if isinstance(density, (list, tuple)) else [density] * n_layers
    bts = bits if isinstance(bits, (list, tuple)) else [bits] * n_layers
    if len(dens) != n_layers or len(bts) != n_layers:
        raise EIEInputError(f"density/bits lists need one value per GRU layer ({n_layers})")

    def quantize(mat, l, d, which, lname):
        return quantize_matrix(mat, density=dens[l], bits=bts[l], seed=seed, init=init)

    return assemble_gru(weights, quantize, n_pe=n_pe, name=name, linear_before_reset=linear_before_reset, bias=bias)


def assemble_gru(weights: list[list[GRUDirectionWeights]], quantize, *, n_pe: int, name: str,
                 linear_before_reset: bool = True, bias: str = "shared") -> EIEGRUCore:
    """Encode every layer/direction's matrices with
    ``quantize(matrix, layer, direction, which in MATRIX_NAMES, layer_name) -> (codes, codebook)``.

    ``bias="dense"`` moves the bias columns of ``w_x`` and ``w_hn`` out of the
    matrices into those layers' biases before ``quantize`` sees them."""
    check_gru_bias(bias)
    if not weights or not all(weights):
        raise EIEInputError("a GRU needs at least one layer with one or two directions")
    suffix = ("", "_reverse")
    cells = []
    hidden = None
    for l, dirs in enumerate(weights):
        row = []
        for d, w in enumerate(dirs):
            mats = gru_matrices(w, linear_before_reset)
            hidden = mats[1].shape[1]
            layers = []
            for which, mat in zip(MATRIX_NAMES, mats):
                lname = f"{name}.l{l}{suffix[d]}.{which}"
                layer_bias = None
                if bias == "dense" and which != "hrz":  # w_x and w_hn end with their bias column
                    layer_bias = mat[:, -1].copy() if mat[:, -1].any() else None
                    mat[:, -1] = 0.0
                codes, codebook = quantize(mat, l, d, which, lname)
                layers.append(EIELinear(InterleavedCSC.from_codes(codes, codebook, resolve_n_pe(n_pe, codes.shape[0]),
                                                                  name=lname), bias=layer_bias, name=lname))
            row.append(tuple(layers))
        cells.append(row)
    return EIEGRUCore(cells, hidden, linear_before_reset=linear_before_reset)
