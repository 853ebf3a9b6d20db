"""Fuzz ``.eie`` loading: every mutant loads and runs correctly, or is refused
with an :class:`eie_runtime.EIEFormatError`; nothing crashes or hangs.

Budget: ``EIE_FUZZ_EXAMPLES`` mutants (500 by default, ``make fuzz`` sets
10000). The counts are printed (run pytest with ``-s`` to see them) and, with
``EIE_FUZZ_REPORT=path``, written there as JSON.
"""

import collections
import hashlib
import json
import os
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eie_fuzz_lib as fz

BUDGET = int(os.environ.get("EIE_FUZZ_EXAMPLES", "500"))
PEAK_RSS_MB = 2048  # SECURITY.md: the peak resident memory of any fuzz child (so of any one mutant)
# every refusal names where it is: the file, and a layer/tensor/header field
WHERE = re.compile(r"layer \d+|tensor '|header|field|node '|graph model file|graph \w+ '|module '|torch-modules file|file is|\(truncated\?\)|tensors cover|starts at byte|not an eie-runtime")


def make_mutants(n: int, out_dir: Path) -> tuple[list[Path], list[str]]:
    """``n`` distinct mutants (hypothesis repeats itself now and then: ask for more)."""
    seeds = fz.seed_docs()
    made: dict[bytes, str] = {}

    @settings(max_examples=n * 13 // 10 + 20, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data):
        raw, desc = data.draw(fz.mutants(seeds))
        if len(made) < n:
            made.setdefault(raw, desc)

    collect()
    paths, what = [], []
    for i, (raw, desc) in enumerate(made.items()):
        p = out_dir / f"m{i:05d}.eie"
        p.write_bytes(raw)
        paths.append(p)
        what.append(desc)
    return paths, what


def test_seed_files_are_valid(tmp_path):
    """The unmutated seeds load and run (so mutants start from real files)."""
    seeds = fz.seed_docs()
    paths = []
    for name, doc in seeds.items():
        p = tmp_path / f"{name}.eie"
        p.write_bytes(fz.assemble(*fz.table_of(doc)))
        paths.append(p)
    report = fz.run_mutants(paths, tmp_path)
    assert report.counts()["ran"] == len(paths), {i: o for i, o in report.outcomes.items()}


def test_harness_catches_crash_and_hang(tmp_path, monkeypatch):
    """A mutant that kills its child or never returns is named as a crash or a hang,
    and the mutants after it in the batch still run."""
    monkeypatch.setattr(fz, "HANG_S", 3.0)
    good = tmp_path / "good.eie"
    good.write_bytes(fz.assemble(*fz.table_of(fz.seed_docs()["layer"])))
    crash, hang = tmp_path / "x.selftest-crash", tmp_path / "y.selftest-hang"
    crash.write_bytes(b"")
    hang.write_bytes(b"")
    report = fz.run_mutants([good, crash, good, hang, good], tmp_path)
    assert [report.outcomes[i].status for i in range(5)] == ["ran", "crash", "ran", "hang", "ran"]
    assert "-11" in report.outcomes[1].detail  # SIGSEGV


def test_known_hostile_files(tmp_path):
    """Hand-written regressions: a wrapping int64 pointer, a pointer past the entries, a
    nibble past a 2-bit codebook, an absurd declared shape, deep JSON nesting."""
    base = fz.seed_docs()
    cases = {}
    d = fz.seed_docs()["ptr64"]
    p = d.tensors["layers.0.ptr"]
    n = d.tensors["layers.0.entries"].size
    p[0, 1], p[0, 2] = 2**63 - 1, -(2**63) + 5  # differences wrap around: looks monotonic
    cases["wrap"] = d
    d = fz.seed_docs()["layer"]
    d.tensors["layers.0.ptr"][1, 3] = n + 10
    cases["past"] = d
    d = fz.seed_docs()["layers"]  # layer 0 has a 2-bit codebook
    d.tensors["layers.0.entries"][0] = 0x0F
    cases["nibble"] = d
    d = fz.seed_docs()["layer"]
    d.header["layers"][0]["shape"] = [2**40, 30]
    cases["huge"] = d
    raws = {k: fz.assemble(*fz.table_of(v)) for k, v in cases.items()}
    table, data = fz.table_of(base["layer"])
    table["__metadata__"]["eie"] = "[" * 100_000 + "]" * 100_000
    raws["deep"] = fz.assemble(table, data)
    paths = []
    for k, raw in raws.items():
        paths.append(tmp_path / f"{k}.eie")
        paths[-1].write_bytes(raw)
    report = fz.run_mutants(paths, tmp_path)
    for (k, _), path in zip(raws.items(), paths):
        o = report.outcomes[paths.index(path)]
        assert o.status == "rejected", (k, o)
        assert str(path) in o.detail and WHERE.search(o.detail), (k, o.detail)
    assert "layer 0" in report.outcomes[0].detail and "ptr" in report.outcomes[0].detail
    assert "shape" in report.outcomes[3].detail and "16777216" in report.outcomes[3].detail


def test_fuzz_eie_files(tmp_path):
    paths, what = make_mutants(BUDGET, tmp_path)
    distinct = len({hashlib.sha1(p.read_bytes()).hexdigest() for p in paths})
    assert distinct == len(paths) == BUDGET, f"hypothesis made only {distinct} distinct mutants of {BUDGET}"
    report = fz.run_mutants(paths, tmp_path)
    counts = report.counts()
    bad = {i: o for i, o in report.outcomes.items() if o.status in ("error", "crash", "hang")}
    unnamed = {i: o.detail for i, o in report.outcomes.items()
               if o.status == "rejected" and not (str(paths[i]) in o.detail and WHERE.search(o.detail))}
    slow = {i: o.seconds for i, o in report.outcomes.items() if o.seconds > fz.HANG_S}
    reasons = collections.Counter(re.sub(r"\d+", "N", o.detail.split(": ", 2)[-1])[:60]
                                  for o in report.outcomes.values() if o.status == "rejected")
    summary = {"mutants": len(paths), "distinct": distinct, "children": report.children, **counts,
               "peak_rss_mb": round(report.peak_rss_mb()), "huge": sum("huge" in w for w in what),
               "slowest_s": round(max((o.seconds for o in report.outcomes.values()), default=0), 2)}
    print(f"\nfuzz .eie: {json.dumps(summary)}")
    for reason, c in reasons.most_common(12):
        print(f"  {c:5d}  {reason}")
    if os.environ.get("EIE_FUZZ_REPORT"):
        Path(os.environ["EIE_FUZZ_REPORT"]).write_text(json.dumps({**summary, "top_reasons": reasons.most_common(40)}, indent=1))
    assert len(report.outcomes) == len(paths)
    kept = fz.keep_findings(paths, report.outcomes, what)
    assert not bad, f"findings copied to {kept}\n\n" + "\n\n".join(f"{paths[i]} [{what[i]}] {o.status}: {o.detail}" for i, o in list(bad.items())[:5])
    assert not unnamed, "\n".join(f"{paths[i]} [{what[i]}]: {d}" for i, d in list(unnamed.items())[:5])
    assert not slow, slow
    assert report.peak_rss_mb() < PEAK_RSS_MB, summary  # every mutant's peak memory is below its child's peak
    # the mutators must reach both outcomes, or they test nothing
    assert counts["ran"] >= 0.05 * len(paths) and counts["rejected"] >= 0.3 * len(paths), counts


def test_limits_refuse_before_allocation_and_can_be_raised(tmp_path, monkeypatch):
    """Absurd declared sizes are refused with the limit's name and without allocating;
    raising ``LIMITS`` lets a legitimately big layer through."""
    import struct
    import tracemalloc

    import eie_runtime as eie
    from eie_runtime import model_file

    def load_peak(raw: bytes):
        path = tmp_path / "x.eie"
        path.write_bytes(raw)
        tracemalloc.start()
        try:
            try:
                return eie.load(path), tracemalloc.get_traced_memory()[1]
            except eie.EIEFormatError as exc:
                return exc, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    doc = fz.seed_docs()["layer"]
    table, data = fz.table_of(doc)
    # a tensor table entry declaring 2**40 entries (4 TiB) whose offsets "match"
    table["layers.0.entries"] = {"dtype": "U8", "shape": [2**40], "data_offsets": [0, 2**40]}
    err, peak = load_peak(fz.assemble(table, data))
    assert isinstance(err, eie.EIEFormatError) and "data_offsets" in str(err) and peak < 5 << 20
    # a header length of 2**40
    raw = fz.assemble(*fz.table_of(doc))
    err, peak = load_peak(struct.pack("<Q", 2**40) + raw[8:])
    assert "LIMITS['max_header_bytes']" in str(err) and peak < 5 << 20
    # a layer of M = 2**25 rows declared (over max_dim) over a tiny file
    big = fz.seed_docs()["layer"]
    big.header["layers"][0]["shape"] = [2**25, 30]
    big.header["layers"][0]["has_bias"] = False
    big.header["layers"][0]["fixed"] = None
    del big.tensors["layers.0.bias"]
    raw = fz.assemble(*fz.table_of(big))
    err, peak = load_peak(raw)
    assert isinstance(err, eie.EIEFormatError) and "outside [0, 16777216]" in str(err) and peak < 5 << 20
    monkeypatch.setitem(model_file.LIMITS, "max_dim", 1 << 26)
    layer, _ = load_peak(raw)
    assert isinstance(layer, eie.EIELinear) and layer.shape == (2**25, 30)
    # a limit can also be lowered, e.g. for a service that takes uploads (save then refuses such files too)
    four_pes = fz.assemble(*fz.table_of(fz.seed_docs()["layer"]))
    monkeypatch.setitem(model_file.LIMITS, "max_pe", 2)
    err, _ = load_peak(four_pes)
    assert "n_pe" in str(err) and "outside [1, 2]" in str(err)
