"""The float32 recurrent sequence kernels for batches: 16 samples side by side.

``lstm_sequence_f32_batch`` and ``gru_sequence_f32_batch`` run the same
recurrences as the single-sample kernels of ``recurrent.py`` (same gate
functions) for ``LANES`` = 16 samples at once; callers cut a batch into
chunks of 16 and pad the last one with samples of length 0. Everything per
step is kept transposed, samples in the inner loop, so each step is a few
products ``(rows, K) x (K, 16)`` that read every weight once for all 16
samples (``lane_csr``: one vector FMA per entry) and gate loops over
contiguous samples. The input columns are part of the step's product (an
LSTM cell's whole ``[x_t; h; 1]`` matrix in one pass, a GRU's input layer
over ``[x_t; 1]``): at 16 lanes that costs what one batched pass over all
steps would, without a (T*B, 4H) array to build and reorder. The cell updates are
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


@njit(cache=True, inline="always")
def _lanes_of(bias, nb):
    """``bias`` (M,) in each of ``nb`` lanes: (M, nb)."""
    out = np.empty((bias.shape[0], nb), dtype=np.float32)
    for j in range(bias.shape[0]):
        out[j, :] = bias[j]
    return out


@njit(cache=True, inline="always")
def _live_lanes(t, lens, live):
    """Marks the samples whose sequence covers step ``t``; returns how many."""
    n = 0
    for b in range(lens.shape[0]):
        live[b] = t < lens[b]
        n += live[b]
    return n


@njit(cache=True, inline="always")
def _keep_live(dst, src, live):
    """``dst[:, b] = src[:, b]`` for the live samples ``b`` (a select, not a branch)."""
    for j in range(dst.shape[0]):
        for b in range(dst.shape[1]):
            dst[j, b] = src[j, b] if live[b] else dst[j, b]


@njit(cache=True, inline="always")
def _write_live(y, t, y_off, src, live):
    """The live samples' outputs of step ``t``: ``y[t, b, y_off:] = src[:, b]``."""
    for b in range(live.shape[0]):
        if live[b]:
            for j in range(src.shape[0]):
                y[t, b, y_off + j] = src[j, b]


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def lstm_sequence_f32_batch(xt, w_ptr, w_cols, w_vals, w_bias, p_ptr, p_cols, p_vals, p_bias,
                            h0, c0, lens, reverse, y, y_off, h_n, c_n):
    """One LSTM layer/direction over a whole sequence for 16 samples, float32.

    xt (T, K, 16): each step's inputs, transposed. w_*: the CSR of the cell's whole matrix over
    ``[x; h; 1]`` (K + P + 1 columns) and the layer's own bias (4H,). p_*: the projection, or an
    empty CSR (``p_ptr`` of length 1). h0 (16, P), c0 (16, H); samples with ``t >= lens[b]`` keep
    their state; ``y`` (zeroed, possibly a view of fewer samples) gets only live samples' outputs
    at y[t, b, y_off:y_off+P]; writes h_n (16, P), c_n (16, H)."""
    t_len, k, nb = xt.shape
    ps = h0.shape[1]
    hs = c0.shape[1]
    proj = p_ptr.shape[0] > 1
    vt = np.empty((k + ps + 1, nb), dtype=np.float32)  # [x_t; h; 1]: h lives here between steps
    vt[k:k + ps, :] = h0.T
    vt[k + ps, :] = np.float32(1.0)
    w_start, p_start = _lanes_of(w_bias, nb), _lanes_of(p_bias, nb)
    gates = np.empty((4 * hs, nb), dtype=np.float32)
    mt = np.empty((hs, nb), dtype=np.float32)
    hp = np.empty((ps, nb), dtype=np.float32)
    ct = np.ascontiguousarray(c0.T)
    c_new = np.empty((hs, nb), dtype=np.float32)
    live = np.empty(nb, dtype=np.bool_)
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        n_live = _live_lanes(t, lens, live)
        if n_live == 0:
            continue
        vt[:k, :] = xt[t]
        csr_times_lanes(w_ptr, w_cols, w_vals, vt, w_start, gates)
        _lstm_cells_lanes(gates, ct, c_new, mt)
        if n_live == nb:
            ct, c_new = c_new, ct
        else:
            _keep_live(ct, c_new, live)
        if proj:
            csr_times_lanes(p_ptr, p_cols, p_vals, mt, p_start, hp)
        else:
            hp, mt = mt, hp
        _keep_live(vt[k:k + ps], hp, live)
        _write_live(y, t, y_off, vt[k:k + ps], live)
    h_n[:, :] = vt[k:k + ps].T
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
def gru_sequence_f32_batch(lbr, xt, x_ptr, x_cols, x_vals, x_bias, rz_ptr, rz_cols, rz_vals, rz_bias,
                           n_ptr, n_cols, n_vals, n_bias, h0, lens, reverse, y, y_off, h_n):
    """One GRU layer/direction over a whole sequence for 16 samples, float32.

    xt (T, K, 16): each step's inputs, transposed. x_*: the input layer (3H, K + 1) over ``[x; 1]``;
    rz_*: the (2H, H) hidden matrix of r and z; n_*: the (H, H + 1) one of the candidate over
    ``[h; 1]`` (``lbr``: linear_before_reset) or ``[r * h; 1]``; ``*_bias`` the layers' own biases.
    h0 (16, H); ``lens``, ``y``, ``h_n`` as in ``lstm_sequence_f32_batch``."""
    t_len, k, nb = xt.shape
    hs = h0.shape[1]
    vx = np.empty((k + 1, nb), dtype=np.float32)  # [x_t; 1]
    vx[k, :] = np.float32(1.0)
    vt = np.empty((hs + 1, nb), dtype=np.float32)  # [h or r * h; 1]
    vt[hs, :] = np.float32(1.0)
    x_start, rz_start, n_start = _lanes_of(x_bias, nb), _lanes_of(rz_bias, nb), _lanes_of(n_bias, nb)
    gx = np.empty((3 * hs, nb), dtype=np.float32)
    hrz = np.empty((2 * hs, nb), dtype=np.float32)
    hn = np.empty((hs, nb), dtype=np.float32)
    ht = np.ascontiguousarray(h0.T)
    h_new = np.empty((hs, nb), dtype=np.float32)
    live = np.empty(nb, dtype=np.bool_)
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        n_live = _live_lanes(t, lens, live)
        if n_live == 0:
            continue
        vx[:k, :] = xt[t]
        csr_times_lanes(x_ptr, x_cols, x_vals, vx, x_start, gx)
        csr_times_lanes(rz_ptr, rz_cols, rz_vals, ht, rz_start, hrz)
        if lbr:
            vt[:hs, :] = ht
        else:
            _gru_reset_lanes(gx, hrz, ht, vt)
        csr_times_lanes(n_ptr, n_cols, n_vals, vt, n_start, hn)
        _gru_cells_lanes(lbr, gx, hrz, hn, ht, h_new)
        if n_live == nb:
            ht, h_new = h_new, ht
        else:
            _keep_live(ht, h_new, live)
        _write_live(y, t, y_off, ht, live)
    h_n[:, :] = ht.T
