"""Huge declared sizes within the limits (issue 18): valid files of a few KB to 4 MB declaring millions of
rows or tens of thousands of columns, which must load and run at a cost bounded as SECURITY.md states."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


#: Declared sizes within LIMITS that a file of a few KB to 4 MB can carry: rows cost nothing in the file (a
#: layer without bias and with its entries unchanged), columns cost a pointer per PE each. Rows stop at 2**21
#: (LIMITS allow 2**24) so that a mutant's first float32 + fixed16 runs stay under the 10 s hang limit on a
#: loaded 2-core machine; tests/test_hostile_costs.py covers the larger ones.
HUGE_ROWS = [1 << 16, (1 << 20) + 5, 1 << 21]
HUGE_COLS = [1 << 12, (1 << 16) + 3]


def mutate_huge(draw, doc) -> str:
    """A valid layer made huge in its declared size: M (bias dropped) and/or K (empty columns appended)."""
    h, t = doc.header, doc.tensors
    layers = h.get("layers") if isinstance(h.get("layers"), list) else []
    if not layers:
        return "noop"
    i = draw(st.integers(0, len(layers) - 1))
    lh = layers[i]
    key = f"layers.{i}.ptr"
    if not (isinstance(lh, dict) and isinstance(lh.get("shape"), list) and key in t):
        return "noop"
    m, k = lh["shape"]
    how = draw(st.sampled_from(["rows", "cols", "both"]))
    if how != "cols":
        m = draw(st.sampled_from(HUGE_ROWS))
        lh["has_bias"] = False
        t.pop(f"layers.{i}.bias", None)
    if how != "rows":
        new_k = draw(st.sampled_from(HUGE_COLS))
        ptr = t[key]
        t[key] = np.concatenate([ptr, np.repeat(ptr[:, -1:], new_k - k, axis=1)], axis=1)
        k = new_k
    lh["shape"] = [m, k]
    return f"layer {i}: huge {how}: shape = [{m}, {k}]"
