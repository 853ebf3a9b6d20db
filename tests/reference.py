"""Plain-Python/numpy references of the format and both kernels, used only by tests.

Written straight from the paper and docs/design.md, independently of the Numba code.
"""

import numpy as np


def encode_column(col_codes):
    """(v, z) lists of one PE's slice of one column (Section III-B)."""
    v, z = [], []
    run = 0
    for c in col_codes:
        if c == 0:
            run += 1
            continue
        while run > 15:
            v.append(0)
            z.append(15)
            run -= 16
        v.append(int(c))
        z.append(run)
        run = 0
    return v, z


def encode(codes, n_pe):
    """entries (uint8) and ptr (n_pe, K+1) exactly as docs/design.md lays them out."""
    m, k = codes.shape
    entries, ptr = [], np.zeros((n_pe, k + 1), dtype=np.int64)
    for pe in range(n_pe):
        for j in range(k):
            ptr[pe, j] = len(entries)
            v, z = encode_column(codes[pe::n_pe, j])
            entries += [(zz << 4) | vv for vv, zz in zip(v, z)]
        ptr[pe, k] = len(entries)
    return np.array(entries, dtype=np.uint8), ptr


def float32_layer(dense, x, bias=None, relu=False):
    """act(W x + b) in float64, rounded to float32."""
    y = np.asarray(x, dtype=np.float64) @ np.asarray(dense, dtype=np.float64).T
    if bias is not None:
        y = y + bias
    if relu:
        y = np.maximum(y, 0.0)
    return y.astype(np.float32)


def _sat(v):
    return max(-32768, min(32767, v))


def _round_half_up(x, frac):
    return _sat(int(np.floor(float(x) * 2.0 ** frac + 0.5)))


def fixed16_layer(codes, codebook, x_q, *, in_frac, w_frac, out_frac, bias=None, relu=False):
    """The fixed16 arithmetic of docs/design.md, one Python int at a time, in broadcast order."""
    m, k = codes.shape
    s = w_frac + in_frac - out_frac
    cb_q = [_round_half_up(c, w_frac) for c in codebook]
    out = np.zeros(m, dtype=np.int16)
    for i in range(m):
        acc = _round_half_up(bias[i], out_frac) if bias is not None else 0
        for j in range(k):  # ascending column: the leading-non-zero detector's order
            a = int(x_q[j])
            c = int(codes[i, j])
            if a == 0 or c == 0:
                continue
            p = cb_q[c] * a
            if s > 0:
                p = (p + (1 << (s - 1))) >> s
            acc = _sat(acc + p)
        if relu and acc < 0:
            acc = 0
        out[i] = acc
    return out
