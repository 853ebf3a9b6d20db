"""Fuzz ONNX input: every mutated ONNX model either converts (``eie convert``) into a
``.eie`` file that loads and runs, or is refused with an ``eie_runtime.EIEError``;
nothing crashes or hangs.

Budget: ``EIE_FUZZ_ONNX_EXAMPLES`` mutants (default: half of ``EIE_FUZZ_EXAMPLES``,
so 250 in ``make test`` and 5000 in ``make fuzz``).
"""

import collections
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx")

import eie_fuzz_lib as fz  # noqa: E402

BUDGET = int(os.environ.get("EIE_FUZZ_ONNX_EXAMPLES", int(os.environ.get("EIE_FUZZ_EXAMPLES", "500")) // 2))


def test_onnx_seeds_convert_and_run(tmp_path):
    paths = []
    for name, proto in fz.onnx_seeds().items():
        paths.append(tmp_path / f"{name}.onnx")
        paths[-1].write_bytes(proto.SerializeToString())
    report = fz.run_mutants(paths, tmp_path, what="onnx")
    assert [o.status for o in report.outcomes.values()] == ["ran"] * len(paths), report.outcomes


def test_fuzz_onnx_convert(tmp_path):
    seeds = fz.onnx_seeds()
    made = []

    @settings(max_examples=BUDGET, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data):
        made.append(data.draw(fz.onnx_mutants(seeds)))

    collect()
    paths, what = [], []
    for i, (raw, desc) in enumerate(made):
        paths.append(tmp_path / f"o{i:05d}.onnx")
        paths[-1].write_bytes(raw)
        what.append(desc)
    assert len(paths) >= BUDGET * 0.95
    report = fz.run_mutants(paths, tmp_path, what="onnx")
    counts = report.counts()
    reasons = collections.Counter(re.sub(r"\d+", "N", o.detail.split(": ", 2)[-1])[:60]
                                  for o in report.outcomes.values() if o.status == "rejected")
    summary = {"mutants": len(paths), "children": report.children, **counts}
    print(f"\nfuzz onnx: {json.dumps(summary)}")
    for reason, c in reasons.most_common(10):
        print(f"  {c:5d}  {reason}")
    if os.environ.get("EIE_FUZZ_REPORT"):
        Path(os.environ["EIE_FUZZ_REPORT"] + ".onnx.json").write_text(
            json.dumps({**summary, "top_reasons": reasons.most_common(40)}, indent=1))
    bad = {i: o for i, o in report.outcomes.items() if o.status in ("error", "crash", "hang")}
    assert len(report.outcomes) == len(paths)
    assert not bad, "\n\n".join(f"{paths[i]} [{what[i]}] {o.status}: {o.detail}" for i, o in list(bad.items())[:5])
    assert counts["ran"] >= 0.03 * len(paths) and counts["rejected"] >= 0.3 * len(paths), counts
