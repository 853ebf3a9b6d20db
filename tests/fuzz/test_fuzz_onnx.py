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

pytest.importorskip("onnx", reason="needs the [onnx] extra")

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
    made: dict[bytes, str] = {}

    @settings(max_examples=BUDGET * 13 // 10 + 20, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data):
        raw, desc = data.draw(fz.onnx_mutants(seeds))
        if len(made) < BUDGET:
            made.setdefault(raw, desc)  # distinct mutants only

    collect()
    paths, what = [], []
    for i, (raw, desc) in enumerate(made.items()):
        paths.append(tmp_path / f"o{i:05d}.onnx")
        paths[-1].write_bytes(raw)
        what.append(desc)
    assert len(paths) == BUDGET, f"hypothesis made only {len(paths)} distinct mutants of {BUDGET}"
    report = fz.run_mutants(paths, tmp_path, what="onnx")
    counts = report.counts()
    reasons = collections.Counter(re.sub(r"\d+", "N", o.detail.split(": ", 2)[-1])[:60]
                                  for o in report.outcomes.values() if o.status == "rejected")
    summary = {"mutants": len(paths), "distinct": len(set(made)), "children": report.children, **counts,
               "peak_rss_mb": round(report.peak_rss_mb())}
    print(f"\nfuzz onnx: {json.dumps(summary)}")
    for reason, c in reasons.most_common(10):
        print(f"  {c:5d}  {reason}")
    if os.environ.get("EIE_FUZZ_REPORT"):
        Path(os.environ["EIE_FUZZ_REPORT"] + ".onnx.json").write_text(
            json.dumps({**summary, "top_reasons": reasons.most_common(40)}, indent=1))
    bad = {i: o for i, o in report.outcomes.items() if o.status in ("error", "crash", "hang")}
    assert len(report.outcomes) == len(paths)
    kept = fz.keep_findings(paths, report.outcomes, what)
    assert not bad, f"findings copied to {kept}\n\n" + "\n\n".join(f"{paths[i]} [{what[i]}] {o.status}: {o.detail}" for i, o in list(bad.items())[:5])
    assert counts["ran"] >= 0.03 * len(paths) and counts["rejected"] >= 0.3 * len(paths), counts
    assert report.peak_rss_mb() < 2048, summary  # SECURITY.md: every mutant's peak is below its child's


def test_invalid_utf8_names_are_refused(tmp_path):
    """Found by this fuzzer: protobuf (upb) returns ``bytes`` for a proto2 string field
    that is not UTF-8; a node name like that must be refused, not crash the JSON header."""
    raw = fz.onnx_seeds()["lstm"].SerializeToString()
    i = raw.find(b"lstm")  # the node's name comes first
    path = tmp_path / "bad-name.onnx"
    path.write_bytes(raw[:i] + b"\xff" + raw[i + 1:])
    report = fz.run_mutants([path], tmp_path, what="onnx")
    assert report.outcomes[0].status == "rejected", report.outcomes[0]


def test_external_data_cannot_read_local_files(tmp_path, monkeypatch):
    """An initializer may say its bytes live in an external file. Resolved against the
    current directory, that would copy any file under it (``.ssh/id_rsa`` when run from
    $HOME) into the converted model, verbatim with ``--lossless``. It must be refused."""
    import numpy as np
    from onnx import TensorProto

    import eie_runtime as eie
    from eie_runtime.onnx import convert

    secret = np.arange(192, dtype=np.float32)
    (tmp_path / "secret.bin").write_bytes(secret.tobytes())
    model = fz.onnx_seeds()["mlp"]
    w1 = next(t for t in model.graph.initializer if t.name == "W1")  # 16 x 12 = 192 floats
    w1.ClearField("raw_data")
    w1.data_location = TensorProto.EXTERNAL
    entry = w1.external_data.add()
    entry.key, entry.value = "location", "secret.bin"
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(eie.EIEError, match="W1"):
        g = convert(str(path), density=1.0, n_pe=4, lossless=True)
        leaked = [v for v in g.constants.values() if v.size == 192 and np.array_equal(v.ravel(), secret)]
        raise AssertionError(f"converted, secret.bin copied into the model: {bool(leaked)}")
