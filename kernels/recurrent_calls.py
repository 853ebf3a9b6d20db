"""Recurrent layers of a few samples in one compiled call each: the input product and the sequence kernel.

A node or module call on a short sequence of one to five samples is a few
microseconds of arithmetic; each separate kernel call, array made in Python
and transpose around it costs about as much. These kernels take the layer's
input ``x (T, B, I)`` as it comes and make the input columns' product
themselves, then run the sequence kernels of ``recurrent.py`` (same
arithmetic, so the same results: float32 as the separate calls, fixed16 bit
for bit).
"""

import numpy as np

from .jit import njit
from .lane_csr import LANES, csr_times_lanes
from .recurrent import (_FAST, _quant, gru_sequence_f32, gru_sequence_fixed16, lstm_sequence_f32,
                        lstm_sequence_fixed16, quantize_t, rows_fixed16_batch)


@njit(cache=True, inline="always")
def _input_gates_f32(ptr, cols, vals, bias, x, g):
    """g (T*B, M) = W x[t, b] + bias for every step and sample of x (T, B, K). One sample: each row's sum
    in a register. More: 16 at a time, side by side (``lane_csr``: one 16-lane FMA per entry, each row's
    sums in registers, started at the bias), the last group padded with zeros."""
    t_len, nb, k = x.shape
    n = t_len * nb
    m = ptr.shape[0] - 1
    if n == 1:
        for r in range(m):
            acc = np.float32(0.0)
            for e in range(np.uint64(ptr[r]), np.uint64(ptr[r + 1])):
                acc += vals[e] * x[0, 0, cols[e]]
            g[0, r] = acc + bias[r]
        return
    vt = np.zeros((k, LANES), dtype=np.float32)
    start = np.empty((m, LANES), dtype=np.float32)
    for r in range(m):
        for j in range(LANES):
            start[r, j] = bias[r]
    acc = np.empty((m, LANES), dtype=np.float32)
    for s0 in range(0, n, LANES):
        w = min(LANES, n - s0)
        for j in range(LANES):
            if j < w:
                t, b = (s0 + j) // nb, (s0 + j) % nb
                for c in range(k):
                    vt[c, j] = x[t, b, c]
            else:
                for c in range(k):
                    vt[c, j] = np.float32(0.0)
        csr_times_lanes(ptr, cols, vals, vt, start, acc)
        for j in range(w):
            for r in range(m):
                g[s0 + j, r] = acc[r, j]


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def lstm_f32(x, x_ptr, x_cols, x_vals, x_bias, h_ptr, h_cols, h_vals, p_ptr, p_cols, p_vals, p_bias,
             h0, c0, lens, reverse, y, y_off, h_n, c_n):
    """One LSTM layer/direction in one call, float32: ``lstm_sequence_f32`` after the input columns' product
    of x (T, B, I) (``x_*``: their CSR, ``x_bias`` the cell's bias plus its bias column)."""
    gx = np.empty((x.shape[0] * x.shape[1], x_bias.shape[0]), dtype=np.float32)
    _input_gates_f32(x_ptr, x_cols, x_vals, x_bias, x, gx)
    lstm_sequence_f32(gx, h_ptr, h_cols, h_vals, p_ptr, p_cols, p_vals, p_bias, h0, c0, lens, reverse, y, y_off,
                      h_n, c_n)


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def gru_f32(lbr, x, x_ptr, x_cols, x_vals, x_bias, rz_ptr, rz_cols, rz_vals, rz_bias, n_ptr, n_cols, n_vals,
            n_bias, h0, lens, reverse, y, y_off, h_n):
    """One GRU layer/direction in one call, float32: ``gru_sequence_f32`` after the input layer's product of
    x (T, B, I) (``x_*``: the CSR of its input columns; ``x_bias`` its bias plus its bias column)."""
    gx = np.empty((x.shape[0] * x.shape[1], x_bias.shape[0]), dtype=np.float32)
    _input_gates_f32(x_ptr, x_cols, x_vals, x_bias, x, gx)
    gru_sequence_f32(lbr, gx, rz_ptr, rz_cols, rz_vals, rz_bias, n_ptr, n_cols, n_vals, n_bias, h0, lens, reverse,
                     y, y_off, h_n)


@njit(cache=True)
def lstm_fixed16(x, x_ptr, x_cols, x_wq, x_in_scale, x_acc0, h_ptr, h_cols, h_wq, h_in_scale, h_shift,
                 h_out_scale, p_ptr, p_cols, p_wq, p_acc0, p_in_scale, p_shift, p_out_scale,
                 h0, c0, lens, reverse, y, y_off, h_n, c_n):
    """One LSTM layer/direction in one call, fixed16: x (T, B, I) quantized, the input columns' accumulators
    (``rows_fixed16_batch`` from ``x_acc0``, the cell's rounded bias, with the cell's ``h_shift``), then
    ``lstm_sequence_fixed16``; bit for bit the separate calls."""
    n = x.shape[0] * x.shape[1]
    xq = np.empty((x.shape[2], n), dtype=np.int32)
    quantize_t(x.reshape(n, x.shape[2]), x_in_scale, xq)
    gx = np.empty((x_acc0.shape[0], n), dtype=np.int32)
    rows_fixed16_batch(x_ptr, x_cols, x_wq, xq, x_acc0, h_shift, gx)
    lstm_sequence_fixed16(gx, h_ptr, h_cols, h_wq, h_in_scale, h_shift, h_out_scale, p_ptr, p_cols, p_wq, p_acc0,
                          p_in_scale, p_shift, p_out_scale, h0, c0, lens, reverse, y, y_off, h_n, c_n)


@njit(cache=True)
def gru_fixed16(lbr, x, x_ptr, x_cols, x_wq, x_acc0, x_in_scale, x_shift, x_out_scale,
                rz_ptr, rz_cols, rz_wq, rz_acc0, rz_in_scale, rz_shift, rz_out_scale,
                n_ptr, n_cols, n_wq, n_acc0, n_in_scale, n_shift, n_out_scale, h0, lens, reverse, y, y_off, h_n):
    """One GRU layer/direction in one call, fixed16: the input layer's call on ``[x_t; 1]`` for every step
    (its whole CSR; the constant column quantized like an input), then ``gru_sequence_fixed16``."""
    t_len, nb, k = x.shape
    n = t_len * nb
    xq = np.empty((k + 1, n), dtype=np.int32)
    quantize_t(x.reshape(n, k), x_in_scale, xq[:k])
    one_q = _quant(np.float32(1.0), x_in_scale)
    for s in range(n):
        xq[k, s] = one_q
    acc = np.empty((x_acc0.shape[0], n), dtype=np.int32)
    rows_fixed16_batch(x_ptr, x_cols, x_wq, xq, x_acc0, x_shift, acc)
    gx = np.empty((n, x_acc0.shape[0]), dtype=np.float32)
    for s in range(n):
        for r in range(x_acc0.shape[0]):
            gx[s, r] = np.float32(np.float64(acc[r, s]) * x_out_scale)
    gru_sequence_fixed16(lbr, gx, rz_ptr, rz_cols, rz_wq, rz_acc0, rz_in_scale, rz_shift, rz_out_scale,
                         n_ptr, n_cols, n_wq, n_acc0, n_in_scale, n_shift, n_out_scale, h0, lens, reverse, y, y_off,
                         h_n)
