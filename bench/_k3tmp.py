import numpy as np
from numba import njit, prange

@njit(cache=True, parallel=True)
def csr_block16c(rowptr, cols, vals, bounds, x16, bias, relu, out):
    nblk = bounds.shape[0] - 1
    nchunk = x16.shape[0]
    for b in prange(nblk):
        acc = np.empty((nchunk, 16), dtype=np.float32)
        for i in range(np.uint64(bounds[b]), np.uint64(bounds[b + 1])):
            acc[:] = 0.0
            for e in range(np.uint64(rowptr[i]), np.uint64(rowptr[i + np.uint64(1)])):
                v = vals[e]
                c = np.uint64(cols[e])
                for ch in range(np.uint64(nchunk)):
                    for s in range(np.uint64(16)):
                        acc[ch, s] += v * x16[ch, c, s]
            for ch in range(nchunk):
                for s in range(16):
                    ss = ch * 16 + s
                    if ss < out.shape[0]:
                        y = acc[ch, s] + bias[i]
                        if relu and y < 0:
                            y = np.float32(0.0)
                        out[ss, i] = y

@njit(cache=True, parallel=True)
def csr_block_t(rowptr, cols, vals, bounds, xt, bias, relu, out_t):
    # out_t (M, B): accumulate straight into the output row
    nblk = bounds.shape[0] - 1
    nbu = np.uint64(xt.shape[1])
    for b in prange(nblk):
        for i in range(np.uint64(bounds[b]), np.uint64(bounds[b + 1])):
            for s in range(nbu):
                out_t[i, s] = 0.0
            for e in range(np.uint64(rowptr[i]), np.uint64(rowptr[i + np.uint64(1)])):
                v = vals[e]
                c = np.uint64(cols[e])
                for s in range(nbu):
                    out_t[i, s] += v * xt[c, s]
