"""Encode weights that are already pruned and shared (a fine-tuned model's) without re-quantizing.

Fine-tuning keeps each matrix as ``codebook[codes]``; these functions recover
the codes from the weight values and encode them, so the EIE layer holds
exactly the trained masks and centroids.
"""

from __future__ import annotations

import numpy as np

from eie_runtime.errors import EIEInputError
from eie_runtime.format import InterleavedCSC
from eie_runtime.layer import EIELinear, resolve_n_pe
from eie_runtime.lstm import EIELSTMCore

from .compress import as_bias, as_weight_matrix, check_n_pe
from .lstm import LSTMDirectionWeights, assemble_lstm


def codes_of(values: np.ndarray, codebook: np.ndarray, what: str) -> np.ndarray:
    """Codebook index of every value (0 for 0.0); every value must be exactly a codebook entry."""
    order = np.argsort(codebook, kind="stable")
    sorted_cb = codebook[order]
    pos = np.clip(np.searchsorted(sorted_cb, values), 0, len(codebook) - 1)
    codes = order[pos].astype(np.uint8)
    codes[values == 0.0] = 0
    if not np.array_equal(codebook[codes], values):
        raise EIEInputError(f"{what}: weights are not all codebook values (was the shared model modified by hand?)")
    return codes


def linear_from_codes(weight: np.ndarray, bias, codebook: np.ndarray, *, n_pe: int, name=None) -> EIELinear:
    """Encode a weight already pruned and shared over ``codebook`` (e.g. after fine-tuning)."""
    n_pe = check_n_pe(n_pe)
    w = as_weight_matrix(weight)
    codes = codes_of(w.astype(np.float32), codebook, f"layer {name!r}")
    b = as_bias(bias, w.shape[0]) if bias is not None else None
    return EIELinear(InterleavedCSC.from_codes(codes, codebook, resolve_n_pe(n_pe, codes.shape[0]), name=name), bias=b, name=name)


def lstm_from_codes(weights: list[list[LSTMDirectionWeights]], codebooks, *, n_pe: int,
                    name: str = "lstm", bias: str = "shared") -> EIELSTMCore:
    """An EIE LSTM from weights already pruned and shared; ``codebooks[l][d] = (cell, proj or None)``.

    The matrix of each layer/direction comes from :func:`~eie_runtime.converters.lstm.assemble_lstm`,
    the layout ``compress_lstm`` uses, so both paths build the same matrices.
    """
    def quantize(mat, l, d, is_proj, lname):
        codebook = codebooks[l][d][1 if is_proj else 0]
        return codes_of(mat, codebook, f"layer {lname!r}"), codebook

    return assemble_lstm(weights, quantize, n_pe=check_n_pe(n_pe), name=name, bias=bias)
