"""Plain-text tables for the command line, the demo and the benches."""

from __future__ import annotations


def format_table(rows: list[dict]) -> str:
    """A markdown table of dict rows (same keys), numbers right-aligned."""
    if not rows:
        return "(none)"
    cols = list(rows[0])
    cells = [[str(r[c]) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "| " + " | ".join(v.rjust(w) for v, w in zip(vals, width)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in width) + "|"] + [line(r) for r in cells])
