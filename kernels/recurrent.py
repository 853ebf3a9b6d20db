"""Recurrent layers: whole sequences in one compiled call, float32 and bit-exact fixed16.

A recurrent layer's matrices are split by what is known up front. The input
columns of every time step are one batched product (``rows_f32_batch`` /
``rows_fixed16_batch``, samples in the inner loop, so they vectorise); only
the hidden columns run step by step, inside ``lstm_sequence`` /
``gru_sequence``, which never return to Python between steps.

The matrices come as CSRs over the decoded weights, columns ascending in
every row (``vals`` float32, ``wq`` the same weights in int16 with the
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
step is too small to pay for a parallel launch.
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


# ------------------------------------------------------------------ batched input columns
@njit(cache=True, fastmath={"reassoc", "contract"})
def rows_f32_batch(indptr, cols, vals, xt, out):
    """out (M, N) = W xt for a CSR W and xt (K, N): every sample in the inner loop."""
    n = xt.shape[1]
    for r in range(indptr.shape[0] - 1):
        for s in range(n):
            out[r, s] = np.float32(0.0)
        for e in range(indptr[r], indptr[r + 1]):
            v = vals[e]
            c = cols[e]
            for s in range(n):
                out[r, s] += v * xt[c, s]


@njit(cache=True)
def rows_fixed16_batch(indptr, cols, wq, xqt, acc0, shift, out):
    """out (M, N) int32: accumulators started at acc0 (M,), saturating adds of the rounded products of
    the CSR's columns in ascending order, for int xqt (K, N)."""
    n = xqt.shape[1]
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


# ------------------------------------------------------------------ one step's hidden product
@njit(cache=True, inline="always")
def _hidden_f32(indptr, cols, vals, v, start, col, out):
    """out[r] = start[r, col] + sum_e vals[e] * v[cols[e]] (v ends with the constant 1 where a bias column is)."""
    for r in range(indptr.shape[0] - 1):
        acc = start[r, col]
        for e in range(indptr[r], indptr[r + 1]):
            acc += vals[e] * v[cols[e]]
        out[r] = acc


@njit(cache=True, inline="always")
def _hidden_fixed16(indptr, cols, wq, vq, start, col, shift, out_scale, out):
    """The fixed16 rendering of ``_hidden_f32``: start (M, N) int accumulators, vq int, out float32."""
    for r in range(indptr.shape[0] - 1):
        acc = np.int64(start[r, col])
        for e in range(indptr[r], indptr[r + 1]):
            acc = saturate(acc + round_shift(np.int64(wq[e]) * np.int64(vq[cols[e]]), shift))
        out[r] = np.float32(np.float64(acc) * out_scale)


@njit(cache=True)
def lstm_sequence(fixed, gx, h_ptr, h_cols, h_vals, h_wq, h_in_scale, h_shift, h_out_scale,
                  p_ptr, p_cols, p_vals, p_wq, p_acc0, p_in_scale, p_shift, p_out_scale,
                  h0, c0, lens, reverse, y, y_off, h_n, c_n):
    """One LSTM layer/direction over a whole sequence.

    gx (4H, T*B): the input columns' part of each step's gates (float32; in fixed16 the int
    accumulators after the input columns). h_*: the CSR of the hidden columns plus the bias column
    (local column P is the constant 1). p_*: the projection (P, H) CSR, or an empty one (``p_ptr``
    of length 1) for none. Samples with ``t >= lens[b]`` keep their state and output 0 (y must
    come zeroed). Writes y[t, b, y_off:y_off+P], h_n (B, P), c_n (B, H).
    """
    t_len = y.shape[0]
    nb = h0.shape[0]
    ps = h0.shape[1]
    hs = c0.shape[1]
    proj = p_ptr.shape[0] > 1
    gates = np.empty(4 * hs, dtype=np.float32)
    m = np.empty(hs, dtype=np.float32)
    hp = np.empty(ps, dtype=np.float32)
    v = np.empty(ps + 1, dtype=np.float32)
    vq = np.empty(ps + 1, dtype=np.int64)
    mq = np.empty(hs, dtype=np.int64)
    one_q = _quant(np.float32(1.0), h_in_scale)
    h = h0.copy()
    c = c0.copy()
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        for b in range(nb):
            if t >= lens[b]:
                continue
            col = t * nb + b
            if fixed:
                for j in range(ps):
                    vq[j] = _quant(h[b, j], h_in_scale)
                vq[ps] = one_q
                _hidden_fixed16(h_ptr, h_cols, h_wq, vq, gx, col, h_shift, h_out_scale, gates)
            else:
                for j in range(ps):
                    v[j] = h[b, j]
                v[ps] = np.float32(1.0)
                _hidden_f32(h_ptr, h_cols, h_vals, v, gx, col, gates)
            for j in range(hs):
                cn, mj = _lstm_cell(gates[j], gates[hs + j], gates[2 * hs + j], gates[3 * hs + j], c[b, j])
                c[b, j] = cn
                m[j] = mj
            if proj:
                if fixed:
                    for j in range(hs):
                        mq[j] = _quant(m[j], p_in_scale)
                    for r in range(ps):
                        acc = np.int64(p_acc0[r])
                        for e in range(p_ptr[r], p_ptr[r + 1]):
                            acc = saturate(acc + round_shift(np.int64(p_wq[e]) * mq[p_cols[e]], p_shift))
                        hp[r] = np.float32(np.float64(acc) * p_out_scale)
                else:
                    for r in range(ps):
                        acc = np.float32(p_acc0[r])
                        for e in range(p_ptr[r], p_ptr[r + 1]):
                            acc += p_vals[e] * m[p_cols[e]]
                        hp[r] = acc
                for j in range(ps):
                    h[b, j] = hp[j]
            else:
                for j in range(ps):
                    h[b, j] = m[j]
            for j in range(ps):
                y[t, b, y_off + j] = h[b, j]
    h_n[:, :] = h
    c_n[:, :] = c


@njit(cache=True)
def gru_sequence(fixed, lbr, gx, rz_ptr, rz_cols, rz_vals, rz_wq, rz_acc0, rz_in_scale, rz_shift, rz_out_scale,
                 n_ptr, n_cols, n_vals, n_wq, n_acc0, n_in_scale, n_shift, n_out_scale,
                 h0, lens, reverse, y, y_off, h_n):
    """One GRU layer/direction over a whole sequence.

    gx (3H, T*B) float32: the input layer's output (r, z, n rows) for every step. rz_*: the
    (2H, H) hidden matrix of r and z; n_*: the (H, H + 1) one of the candidate over ``[h; 1]``
    (``lbr``: linear_before_reset) or ``[r * h; 1]``. ``*_acc0`` are the layers' own (rounded, in
    fixed16) biases. Samples with ``t >= lens[b]`` keep their state and output 0 (y zeroed).
    """
    t_len = y.shape[0]
    nb = h0.shape[0]
    hs = h0.shape[1]
    hrz = np.empty(2 * hs, dtype=np.float32)
    hn = np.empty(hs, dtype=np.float32)
    r = np.empty(hs, dtype=np.float32)
    v = np.empty(hs + 1, dtype=np.float32)
    vq = np.empty(hs + 1, dtype=np.int64)
    h = h0.copy()
    for step in range(t_len):
        t = t_len - 1 - step if reverse else step
        for b in range(nb):
            if t >= lens[b]:
                continue
            col = t * nb + b
            # r and z: hidden part over h
            if fixed:
                for j in range(hs):
                    vq[j] = _quant(h[b, j], rz_in_scale)
            for rr in range(2 * hs):
                if fixed:
                    acc = np.int64(rz_acc0[rr])
                    for e in range(rz_ptr[rr], rz_ptr[rr + 1]):
                        acc = saturate(acc + round_shift(np.int64(rz_wq[e]) * vq[rz_cols[e]], rz_shift))
                    hrz[rr] = np.float32(np.float64(acc) * rz_out_scale)
                else:
                    acc = np.float32(rz_acc0[rr])
                    for e in range(rz_ptr[rr], rz_ptr[rr + 1]):
                        acc += rz_vals[e] * h[b, rz_cols[e]]
                    hrz[rr] = acc
            for j in range(hs):
                r[j] = _sig(np.float32(gx[j, col] + hrz[j]))
            # candidate's hidden part over [h; 1] or [r * h; 1]
            for j in range(hs):
                v[j] = h[b, j] if lbr else np.float32(np.float64(r[j]) * np.float64(h[b, j]))
            v[hs] = np.float32(1.0)
            if fixed:
                for j in range(hs + 1):
                    vq[j] = _quant(v[j], n_in_scale)
                for rr in range(hs):
                    acc = np.int64(n_acc0[rr])
                    for e in range(n_ptr[rr], n_ptr[rr + 1]):
                        acc = saturate(acc + round_shift(np.int64(n_wq[e]) * vq[n_cols[e]], n_shift))
                    hn[rr] = np.float32(np.float64(acc) * n_out_scale)
            else:
                for rr in range(hs):
                    acc = np.float32(n_acc0[rr])
                    for e in range(n_ptr[rr], n_ptr[rr + 1]):
                        acc += n_vals[e] * v[n_cols[e]]
                    hn[rr] = acc
            for j in range(hs):
                h[b, j] = _gru_cell(np.float32(gx[j, col] + hrz[j]), np.float32(gx[hs + j, col] + hrz[hs + j]),
                                    gx[2 * hs + j, col], hn[j], h[b, j], lbr)
            for j in range(hs):
                y[t, b, y_off + j] = h[b, j]
    h_n[:, :] = h
