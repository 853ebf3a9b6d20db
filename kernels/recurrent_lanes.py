"""The float32 recurrent sequence kernels for batches: 16 samples side by side.

``lstm_sequence_f32_batch`` and ``gru_sequence_f32_batch`` run the same
recurrences as the single-sample kernels of ``recurrent.py`` (same arguments,
same gate functions) for ``LANES`` = 16 samples at once; callers cut a batch
into chunks of 16 and pad the last one with samples of length 0. Everything
per step is kept transposed, samples in the inner loop: the products read
every weight once for all 16 samples (``lane_csr``: one vector FMA per
entry), and the gate loops run over contiguous samples. The cell updates are
functions of their own, not inlined: compiled alone, LLVM vectorises them
over the samples; inside the sequence kernels it did not (its runtime alias
checks grow with every array a loop touches). Finished samples are masked by
selects, not skipped by branches.
"""

import numpy as np

from .jit import njit
from .lane_csr import LANES, csr_times_lanes
from .recurrent import _FAST, _gru_cell_fast, _sig_fast, _tanh_fast

__all__ = ["LANES", "lstm_sequence_f32_batch", "gru_sequence_f32_batch"]


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _lstm_cells_lanes(gates, ct, c_new, mt):
    """The cell update of ``lstm_sequence_f32_batch``: gates (4H, L), ct/c_new/mt (H, L)."""
    hs, nb = ct.shape
    for j in range(hs):
        for b in range(nb):
            cn = (_sig_fast(gates[hs + j, b]) * ct[j, b] +
                  _sig_fast(gates[j, b]) * _tanh_fast(gates[2 * hs + j, b]))
            c_new[j, b] = cn
            mt[j, b] = _sig_fast(gates[3 * hs + j, b]) * _tanh_fast(cn)


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def lstm_sequence_f32_batch(gxt, h_ptr, h_cols, h_vals, p_ptr, p_cols, p_vals, p_bias,
                            h0, c0, lens, reverse, y, y_off, h_n, c_n):
    """``recurrent.lstm_sequence_f32`` for 16 samples, with the input gates ``gxt`` as (T, 4H, 16):
    a step's block is contiguous. ``y`` may be a view of fewer samples: only live ones are written."""
    t_len = y.shape[0]
    nb, ps = h0.shape
    hs = c0.shape[1]
    proj = p_ptr.shape[0] > 1
    gates = np.empty((4 * hs, nb), dtype=np.float32)
    mt = np.zeros((hs, nb), dtype=np.float32)
    hp = np.empty((ps, nb), dtype=np.float32)
    ht = np.ascontiguousarray(h0.T)
    ct = np.ascontiguousarray(c0.T)
    c_new = np.empty((hs, nb), dtype=np.float32)
    p_start = np.empty((p_bias.shape[0], nb), dtype=np.float32)  # the projection's bias in every lane
    for j in range(p_bias.shape[0]):
        p_start[j, :] = p_bias[j]
    live = np.empty(nb, dtype=np.bool_)
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        n_live = 0
        for b in range(nb):
            live[b] = t < lens[b]
            n_live += live[b]
        if n_live == 0:
            continue
        csr_times_lanes(h_ptr, h_cols, h_vals, ht, gxt[t], gates)
        _lstm_cells_lanes(gates, ct, c_new, mt)
        if n_live == nb:
            ct, c_new = c_new, ct
        else:
            for j in range(hs):
                for b in range(nb):
                    ct[j, b] = c_new[j, b] if live[b] else ct[j, b]
        if proj:
            csr_times_lanes(p_ptr, p_cols, p_vals, mt, p_start, hp)
        else:
            hp, mt = mt, hp
        if n_live == nb:
            ht, hp = hp, ht
        else:
            for j in range(ps):
                for b in range(nb):
                    ht[j, b] = hp[j, b] if live[b] else ht[j, b]
        for b in range(nb):
            if live[b]:
                for j in range(ps):
                    y[t, b, y_off + j] = ht[j, b]
    h_n[:, :] = ht.T
    c_n[:, :] = ct.T


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _gru_reset_lanes(gx, hrz, ht, vt):
    """``vt[:H] = sigmoid(r) * h`` of ``gru_sequence_f32_batch``."""
    hs, nb = ht.shape
    for j in range(hs):
        for b in range(nb):
            vt[j, b] = np.float32(_sig_fast(np.float32(gx[j, b] + hrz[j, b])) * ht[j, b])


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _gru_cells_lanes(lbr, gx, hrz, hn, ht, h_new):
    """The new state of ``gru_sequence_f32_batch``."""
    hs, nb = ht.shape
    for j in range(hs):
        for b in range(nb):
            h_new[j, b] = _gru_cell_fast(gx[j, b] + hrz[j, b], gx[hs + j, b] + hrz[hs + j, b], gx[2 * hs + j, b],
                                         hn[j, b], ht[j, b], lbr)


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def gru_sequence_f32_batch(lbr, gxt, rz_ptr, rz_cols, rz_vals, rz_bias, n_ptr, n_cols, n_vals, n_bias,
                           h0, lens, reverse, y, y_off, h_n):
    """``recurrent.gru_sequence_f32`` for 16 samples, with the input gates ``gxt`` as (T, 3H, 16):
    a step's block is contiguous. ``y`` may be a view of fewer samples: only live ones are written."""
    t_len = y.shape[0]
    nb, hs = h0.shape
    hrz = np.empty((2 * hs, nb), dtype=np.float32)
    hn = np.empty((hs, nb), dtype=np.float32)
    vt = np.empty((hs + 1, nb), dtype=np.float32)
    ht = np.ascontiguousarray(h0.T)
    h_new = np.empty((hs, nb), dtype=np.float32)
    rz_start = np.empty((2 * hs, nb), dtype=np.float32)  # the layers' biases in every lane
    n_start = np.empty((hs, nb), dtype=np.float32)
    for j in range(2 * hs):
        rz_start[j, :] = rz_bias[j]
    for j in range(hs):
        n_start[j, :] = n_bias[j]
    live = np.empty(nb, dtype=np.bool_)
    for b in range(nb):
        vt[hs, b] = np.float32(1.0)  # the bias column's input
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        n_live = 0
        for b in range(nb):
            live[b] = t < lens[b]
            n_live += live[b]
        if n_live == 0:
            continue
        csr_times_lanes(rz_ptr, rz_cols, rz_vals, ht, rz_start, hrz)
        if lbr:
            for j in range(hs):
                for b in range(nb):
                    vt[j, b] = ht[j, b]
        else:
            _gru_reset_lanes(gxt[t], hrz, ht, vt)
        csr_times_lanes(n_ptr, n_cols, n_vals, vt, n_start, hn)
        _gru_cells_lanes(lbr, gxt[t], hrz, hn, ht, h_new)
        if n_live == nb:
            ht, h_new = h_new, ht
        else:
            for j in range(hs):
                for b in range(nb):
                    ht[j, b] = h_new[j, b] if live[b] else ht[j, b]
        for b in range(nb):
            if live[b]:
                for j in range(hs):
                    y[t, b, y_off + j] = ht[j, b]
    h_n[:, :] = ht.T
