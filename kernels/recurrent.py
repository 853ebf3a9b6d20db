"""Recurrent layers: whole sequences in one compiled call, float32 and bit-exact fixed16.

A recurrent layer's matrices are split by what is known up front. The input
columns of every time step are one batched product (``recurrent_calls.py``'s
``_input_gates_f32``; ``rows_fixed16_batch`` here, samples in the inner loop);
only the hidden columns run step by step, inside ``lstm_sequence_*`` /
``gru_sequence_*``, which never return to Python between steps. The float32
kernels may reassociate their row sums (``fastmath`` reassoc/contract only),
which lets LLVM vectorise them; the fixed16 ones are exact.

The matrices come as CSRs over the decoded weights (``cols`` unsigned, so
no index needs a wrap-around check), columns ascending in every row (``vals`` float32, ``wq`` the same weights in int16 with the
layer's ``w_frac``). In fixed16 every accumulator follows docs/design.md bit
for bit: it starts at its (rounded) bias, takes ``saturate(acc +
round_shift(w * a, shift))`` for its columns in ascending order (the input
columns first, in the batched pass, then the hidden ones, then the constant
``1`` of a bias column), and becomes float32 by ``acc * 2**-out_frac``. A
zero activation adds 0, which changes no accumulator, so the kernels need not
skip it. Inputs are quantized as ``fixed_point.to_fixed`` does: float64
``floor(v * 2**frac + 0.5)``, clamped to int16.

The gate non-linearities (``lstm_update``, ``gru_update``) are computed in
float64 and rounded to float32; the step-by-step paths of ``EIELSTMCore`` and
``EIEGRUCore`` call the same functions, so a sequence run in fixed16 equals
step-by-step runs bit for bit. Everything here runs on one thread: a time
step is too small to pay for a parallel launch. Float32 batches run 16
samples side by side in ``recurrent_lanes.py``.
"""

import math

import numpy as np

from .fixed16_arith import round_shift, saturate
from .jit import njit


@njit(cache=True, inline="always")
def _sig(x):
    return np.float32(1.0 / (1.0 + math.exp(-np.float64(x))))


@njit(cache=True, inline="always")
def _tanh(x):
    return np.float32(math.tanh(np.float64(x)))


@njit(cache=True, inline="always")
def _quant(v, scale):
    q = math.floor(np.float64(v) * scale + 0.5)
    if q > 32767.0:
        return np.int64(32767)
    if q < -32768.0:
        return np.int64(-32768)
    return np.int64(q)


# float32 kernels: exp by Cephes' expf polynomial (within 2 ulp) and a table of 2**k, which LLVM vectorises;
# the fixed16 kernels and the step path use the float64 libm functions above. The argument is clamped to
# [-80, 80], where exp and the sigmoids built on it stay normal floats: a saturated gate (|x| in the
# thousands) otherwise made subnormal results, each a microcode assist (a one-step LSTM(128) with
# saturated gates took 7.3 us instead of 4.7), for a difference below 2e-35
_POW2 = np.array([2.0 ** k for k in range(-127, 128)], dtype=np.float32)


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _exp_fast(x):
    x = np.float32(-80.0) if x < np.float32(-80.0) else (np.float32(80.0) if x > np.float32(80.0) else x)
    t = x * np.float32(1.44269504)
    ki = np.int32(t + np.float32(0.5) if t >= np.float32(0.0) else t - np.float32(0.5))  # nearest integer
    k = np.float32(ki)
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    return (p * r * r + r + np.float32(1.0)) * _POW2[np.uint32(ki + np.int32(127))]


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _sig_fast(x):
    return np.float32(1.0) / (np.float32(1.0) + _exp_fast(-x))


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _tanh_fast(x):
    return np.float32(2.0) * _sig_fast(np.float32(2.0) * x) - np.float32(1.0)


@njit(cache=True, inline="always", fastmath={"reassoc", "contract"})
def _gru_cell_fast(gr, gz, gxn, hn, h, lbr):
    r = _sig_fast(gr)
    z = _sig_fast(gz)
    n = _tanh_fast(gxn + r * hn) if lbr else _tanh_fast(gxn + hn)
    return (np.float32(1.0) - z) * n + z * h


@njit(cache=True, inline="always")
def _lstm_cell(gi, gf, gg, go, c):
    """(c', m = o * tanh(c')) of one unit from its four pre-activations and its cell value."""
    i = _sig(gi)
    f = _sig(gf)
    g = _tanh(gg)
    o = _sig(go)
    c_new = np.float32(np.float64(f) * np.float64(c) + np.float64(i) * np.float64(g))
    return c_new, np.float32(np.float64(o) * np.float64(_tanh(c_new)))


@njit(cache=True, inline="always")
def _gru_cell(gr, gz, gxn, hn, h, lbr):
    """(r, h') of one unit: r, z gates, candidate ``n = tanh(gxn + r * hn)`` (linear_before_reset)
    or ``tanh(gxn + hn)`` (``hn`` already applied to ``r * h``), ``h' = (1 - z) n + z h``."""
    r = _sig(gr)
    z = _sig(gz)
    if lbr:
        n = _tanh(np.float32(np.float64(gxn) + np.float64(r) * np.float64(hn)))
    else:
        n = _tanh(np.float32(np.float64(gxn) + np.float64(hn)))
    return np.float32((1.0 - np.float64(z)) * np.float64(n) + np.float64(z) * np.float64(h))


@njit(cache=True)
def lstm_update(gates, c, h_out, c_out):
    """Step-by-step path: gates (B, 4H) in order i, f, g, o; c (B, H) -> m = o * tanh(c') (B, H), c' (B, H)."""
    hs = c.shape[1]
    for b in range(c.shape[0]):
        for j in range(hs):
            cn, m = _lstm_cell(gates[b, j], gates[b, hs + j], gates[b, 2 * hs + j], gates[b, 3 * hs + j], c[b, j])
            c_out[b, j] = cn
            h_out[b, j] = m


@njit(cache=True)
def gru_gates(gx, hrz, rz_out):
    """Step-by-step path: r, z = sigmoid(gx[:, :2H] + hrz) into rz_out (B, 2H)."""
    for b in range(gx.shape[0]):
        for j in range(hrz.shape[1]):
            rz_out[b, j] = _sig(np.float32(gx[b, j] + hrz[b, j]))


@njit(cache=True)
def gru_update(gx, hrz, hn, h, lbr, h_out):
    """Step-by-step path: gx (B, 3H) (r, z, n), hrz (B, 2H), hn (B, H), h (B, H) -> h' (B, H)."""
    hs = h.shape[1]
    for b in range(h.shape[0]):
        for j in range(hs):
            h_out[b, j] = _gru_cell(np.float32(gx[b, j] + hrz[b, j]), np.float32(gx[b, hs + j] + hrz[b, hs + j]),
                                    gx[b, 2 * hs + j], hn[b, j], h[b, j], lbr)


@njit(cache=True, inline="always")
def _step_counts(lens, nb, t_len):
    """Each sample's number of steps: ``lens``, or every step when it is empty (no sequence lengths)."""
    return np.full(nb, t_len, dtype=np.int64) if lens.shape[0] == 0 else lens


# ------------------------------------------------------------------ batched input columns
@njit(cache=True)
def rows_fixed16_batch(indptr, cols, wq, xqt, acc0, shift, out):
    """out (M, N) int32: accumulators started at acc0 (M,), saturating adds of the rounded products of
    the CSR's columns in ascending order, for int xqt (K, N)."""
    n = xqt.shape[1]
    if n == 1:  # one column: the accumulator in a register
        for r in range(indptr.shape[0] - 1):
            acc = np.int64(acc0[r])
            for e in range(indptr[r], indptr[r + 1]):
                acc = saturate(acc + round_shift(np.int64(wq[e]) * np.int64(xqt[cols[e], 0]), shift))
            out[r, 0] = acc
        return
    for r in range(indptr.shape[0] - 1):
        for s in range(n):
            out[r, s] = acc0[r]
        for e in range(indptr[r], indptr[r + 1]):
            w = np.int64(wq[e])
            c = cols[e]
            for s in range(n):
                out[r, s] = saturate(out[r, s] + round_shift(w * np.int64(xqt[c, s]), shift))


@njit(cache=True)
def quantize_t(x, scale, out):
    """out (K, N) int32 = to_fixed(x (N, K)) transposed."""
    for s in range(x.shape[0]):
        for k in range(x.shape[1]):
            out[k, s] = _quant(x[s, k], scale)


# ------------------------------------------------------------------ one step's products
@njit(cache=True, inline="always")
def _mv_f32(ptr, cols, vals, v, out):
    """out[r] = sum_e vals[e] * v[cols[e]] over row r's entries (reassociated in the fastmath callers)."""
    for r in range(ptr.shape[0] - 1):
        acc = np.float32(0.0)
        for e in range(np.uint64(ptr[r]), np.uint64(ptr[r + 1])):  # unsigned: no wrap-around checks
            acc += vals[e] * v[cols[e]]
        out[r] = acc


@njit(cache=True, inline="always")
def _mv_fixed16(ptr, cols, wq, vq, start, col, shift, out_scale, out):
    """out[r] = float32(acc * out_scale), acc from start[r, col] by saturating adds of the rounded
    products, columns ascending: one fixed16 layer call (docs/design.md)."""
    for r in range(ptr.shape[0] - 1):
        acc = np.int64(start[r, col])
        for e in range(np.uint64(ptr[r]), np.uint64(ptr[r + 1])):
            acc = saturate(acc + round_shift(np.int64(wq[e]) * vq[cols[e]], shift))
        out[r] = np.float32(np.float64(acc) * out_scale)


# float32 only: reassociated row sums, and numpy's error model (a float division by zero is Inf, not an
# exception, so the gate loops have no branch out): both let LLVM vectorise; NaN/Inf keep their meaning
_FAST = {"reassoc", "contract"}


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def lstm_sequence_f32(gx, h_ptr, h_cols, h_vals, p_ptr, p_cols, p_vals, p_bias,
                      h0, c0, lens, reverse, y, y_off, h_n, c_n):
    """One LSTM layer/direction over a whole sequence, float32.

    gx (T*B, 4H): the input columns' part of each step's gates, bias included. h_*: the CSR of the
    hidden columns (H or P of them). p_*: the projection (P, H) CSR and its bias, or an empty CSR
    (``p_ptr`` of length 1) for none. Samples with ``t >= lens[b]`` keep their state and output 0
    (y must come zeroed); an empty ``lens`` runs every sample over every step. Writes y[t, b, y_off:y_off+P],
    h_n (B, P), c_n (B, H).
    """
    t_len = y.shape[0]
    nb, ps = h0.shape
    hs = c0.shape[1]
    proj = p_ptr.shape[0] > 1
    gates = np.empty(4 * hs, dtype=np.float32)
    m = np.empty(hs, dtype=np.float32)
    hp = np.empty(ps, dtype=np.float32)
    v = np.empty(ps, dtype=np.float32)
    h = h0.copy()
    c = c0.copy()
    lens = _step_counts(lens, nb, t_len)
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        for b in range(nb):
            if t >= lens[b]:
                continue
            col = t * nb + b
            for j in range(ps):
                v[j] = h[b, j]
            _mv_f32(h_ptr, h_cols, h_vals, v, gates)
            for j in range(4 * hs):
                gates[j] += gx[col, j]
            for j in range(hs):
                cn = _sig_fast(gates[hs + j]) * c[b, j] + _sig_fast(gates[j]) * _tanh_fast(gates[2 * hs + j])
                c[b, j] = cn
                m[j] = _sig_fast(gates[3 * hs + j]) * _tanh_fast(cn)
            if proj:
                _mv_f32(p_ptr, p_cols, p_vals, m, hp)
                for j in range(ps):
                    h[b, j] = hp[j] + p_bias[j]
            else:
                for j in range(ps):
                    h[b, j] = m[j]
            for j in range(ps):
                y[t, b, y_off + j] = h[b, j]
    h_n[:, :] = h
    c_n[:, :] = c


@njit(cache=True)
def lstm_sequence_fixed16(gx, h_ptr, h_cols, h_wq, h_in_scale, h_shift, h_out_scale,
                          p_ptr, p_cols, p_wq, p_acc0, p_in_scale, p_shift, p_out_scale,
                          h0, c0, lens, reverse, y, y_off, h_n, c_n):
    """``lstm_sequence_f32`` in fixed16, bit for bit the step path's layer calls.

    gx (4H, T*B) int: the accumulators after the input columns (``rows_fixed16_batch``). h_*: the
    CSR of the hidden columns plus the bias column (local column P is the constant 1) with the cell
    layer's w_frac weights, 2**in_frac, shift and 2**-out_frac; p_* the projection's likewise
    (``p_acc0`` (P, 1) its rounded bias), or an empty CSR.
    """
    t_len = y.shape[0]
    nb, ps = h0.shape
    hs = c0.shape[1]
    proj = p_ptr.shape[0] > 1
    gates = np.empty(4 * hs, dtype=np.float32)
    m = np.empty(hs, dtype=np.float32)
    hp = np.empty(ps, dtype=np.float32)
    vq = np.empty(ps + 1, dtype=np.int64)
    mq = np.empty(hs, dtype=np.int64)
    one_q = _quant(np.float32(1.0), h_in_scale)
    h = h0.copy()
    c = c0.copy()
    lens = _step_counts(lens, nb, t_len)
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        for b in range(nb):
            if t >= lens[b]:
                continue
            col = t * nb + b
            for j in range(ps):
                vq[j] = _quant(h[b, j], h_in_scale)
            vq[ps] = one_q
            _mv_fixed16(h_ptr, h_cols, h_wq, vq, gx, col, h_shift, h_out_scale, gates)
            for j in range(hs):
                cn, mj = _lstm_cell(gates[j], gates[hs + j], gates[2 * hs + j], gates[3 * hs + j], c[b, j])
                c[b, j] = cn
                m[j] = mj
            if proj:
                for j in range(hs):
                    mq[j] = _quant(m[j], p_in_scale)
                _mv_fixed16(p_ptr, p_cols, p_wq, mq, p_acc0, 0, p_shift, p_out_scale, hp)
                for j in range(ps):
                    h[b, j] = hp[j]
            else:
                for j in range(ps):
                    h[b, j] = m[j]
            for j in range(ps):
                y[t, b, y_off + j] = h[b, j]
    h_n[:, :] = h
    c_n[:, :] = c


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def gru_sequence_f32(lbr, gx, rz_ptr, rz_cols, rz_vals, rz_bias, n_ptr, n_cols, n_vals, n_bias,
                     h0, lens, reverse, y, y_off, h_n):
    """One GRU layer/direction over a whole sequence, float32.

    gx (3H, T*B): the input layer's output (rows r, z, n) for every step. rz_*: the (2H, H) hidden
    matrix of r and z; n_*: the (H, H + 1) one of the candidate over ``[h; 1]`` (``lbr``:
    linear_before_reset) or ``[r * h; 1]``; ``*_bias`` the layers' own biases. Samples with
    ``t >= lens[b]`` keep their state and output 0 (y zeroed).
    """
    t_len = y.shape[0]
    nb, hs = h0.shape
    hrz = np.empty(2 * hs, dtype=np.float32)
    hn = np.empty(hs, dtype=np.float32)
    v = np.empty(hs + 1, dtype=np.float32)
    hv = np.empty(hs, dtype=np.float32)
    h = h0.copy()
    lens = _step_counts(lens, nb, t_len)
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        for b in range(nb):
            if t >= lens[b]:
                continue
            col = t * nb + b
            for j in range(hs):
                hv[j] = h[b, j]
            _mv_f32(rz_ptr, rz_cols, rz_vals, hv, hrz)
            for j in range(2 * hs):
                hrz[j] += rz_bias[j]
            for j in range(hs):
                v[j] = hv[j] if lbr else np.float32(_sig_fast(np.float32(gx[col, j] + hrz[j])) * hv[j])
            v[hs] = np.float32(1.0)
            _mv_f32(n_ptr, n_cols, n_vals, v, hn)
            for j in range(hs):
                h[b, j] = _gru_cell_fast(gx[col, j] + hrz[j], gx[col, hs + j] + hrz[hs + j], gx[col, 2 * hs + j],
                                         hn[j] + n_bias[j], hv[j], lbr)
                y[t, b, y_off + j] = h[b, j]
    h_n[:, :] = h


@njit(cache=True)
def gru_sequence_fixed16(lbr, gx, rz_ptr, rz_cols, rz_wq, rz_acc0, rz_in_scale, rz_shift, rz_out_scale,
                         n_ptr, n_cols, n_wq, n_acc0, n_in_scale, n_shift, n_out_scale,
                         h0, lens, reverse, y, y_off, h_n):
    """``gru_sequence_f32`` in fixed16, bit for bit the step path's layer calls (``*_acc0``: the
    layers' rounded biases, (rows, 1); scales 2**in_frac and 2**-out_frac)."""
    t_len = y.shape[0]
    nb, hs = h0.shape
    hrz = np.empty(2 * hs, dtype=np.float32)
    hn = np.empty(hs, dtype=np.float32)
    vq = np.empty(hs + 1, dtype=np.int64)
    h = h0.copy()
    lens = _step_counts(lens, nb, t_len)
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        for b in range(nb):
            if t >= lens[b]:
                continue
            col = t * nb + b
            for j in range(hs):
                vq[j] = _quant(h[b, j], rz_in_scale)
            _mv_fixed16(rz_ptr, rz_cols, rz_wq, vq, rz_acc0, 0, rz_shift, rz_out_scale, hrz)
            for j in range(hs):
                vj = h[b, j] if lbr else np.float32(np.float64(_sig(np.float32(gx[col, j] + hrz[j]))) *
                                                    np.float64(h[b, j]))
                vq[j] = _quant(vj, n_in_scale)
            vq[hs] = _quant(np.float32(1.0), n_in_scale)
            _mv_fixed16(n_ptr, n_cols, n_wq, vq, n_acc0, 0, n_shift, n_out_scale, hn)
            for j in range(hs):
                h[b, j] = _gru_cell(np.float32(gx[col, j] + hrz[j]), np.float32(gx[col, hs + j] + hrz[hs + j]),
                                    gx[col, 2 * hs + j], hn[j], h[b, j], lbr)
                y[t, b, y_off + j] = h[b, j]
    h_n[:, :] = h
