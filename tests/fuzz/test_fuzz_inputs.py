"""Fuzz the command line's input arrays and special paths (issue 18): every mutated ``.npy`` / ``.npz`` given to
``eie run -i`` runs or is refused with an EIEError, within the memory bound; FIFOs, devices, directories and
symlinks to them, as model files, input files or save targets, are refused without blocking or reading.

Budget: ``EIE_FUZZ_EXAMPLES // 4`` input mutants (125 by default, 2500 under ``make fuzz``).
"""

import collections
import json
import os
import re
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eie_fuzz_lib as fz

BUDGET = max(20, int(os.environ.get("EIE_FUZZ_EXAMPLES", "500")) // 4)
PEAK_RSS_MB = 2048  # SECURITY.md: the peak resident memory of any fuzz child, so of any one mutant


def make_input_mutants(n: int, out_dir: Path):
    made: dict[bytes, tuple[str, str]] = {}

    @settings(max_examples=n * 2 + 20, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data):
        raw, suffix, desc = data.draw(fz.input_mutants())
        if len(made) < n:
            made.setdefault(raw, (suffix, desc))

    collect()
    paths, what = [], []
    for i, (raw, (suffix, desc)) in enumerate(made.items()):
        p = out_dir / f"in{i:05d}{suffix}"
        p.write_bytes(raw)
        paths.append(p)
        what.append(desc)
    return paths, what


def test_fuzz_cli_input_arrays(tmp_path):
    fz.input_model(tmp_path / "input-model.eie")
    paths, what = make_input_mutants(BUDGET, tmp_path)
    report = fz.run_mutants(paths, tmp_path, what="input")
    counts = report.counts()
    reasons = collections.Counter(re.sub(r"\S+\.np[yz]:? ", "", o.detail.split(": ", 1)[-1])[:60]
                                  for o in report.outcomes.values() if o.status == "rejected")
    print(f"\nfuzz CLI inputs: {json.dumps({'mutants': len(paths), 'children': report.children, **counts, 'peak_rss_mb': round(report.peak_rss_mb())})}")
    for reason, c in reasons.most_common(8):
        print(f"  {c:5d}  {reason}")
    if os.environ.get("EIE_FUZZ_REPORT"):
        Path(os.environ["EIE_FUZZ_REPORT"] + ".inputs.json").write_text(json.dumps(
            {"mutants": len(paths), **counts, "peak_rss_mb": report.peak_rss_mb(), "top_reasons": reasons.most_common(20)}, indent=1))
    bad = {i: o for i, o in report.outcomes.items() if o.status in ("error", "crash", "hang")}
    kept = fz.keep_findings(paths, report.outcomes, what)
    assert not bad, f"findings copied to {kept}\n\n" + "\n\n".join(f"{paths[i]} [{what[i]}] {o.status}: {o.detail}" for i, o in list(bad.items())[:5])
    assert counts["ran"] >= 1 and counts["rejected"] >= 0.3 * len(paths), counts
    assert report.peak_rss_mb() < PEAK_RSS_MB


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_special_paths_as_models_inputs_and_save_targets(tmp_path):
    """Each special path through the fuzz child (so a hang on a FIFO or an endless read of /dev/zero is seen as
    a hang, not a stuck test): as a model file, as a CLI input; then as a save target in this process."""
    import eie_runtime as eie

    fz.input_model(tmp_path / "input-model.eie")
    specials = []

    def add(name, make):
        p = tmp_path / name
        make(p)
        specials.append(p)

    add("fifo.eie", os.mkfifo)
    add("zero.eie", lambda p: p.symlink_to("/dev/zero"))
    add("null.eie", lambda p: p.symlink_to("/dev/null"))
    add("random.npy", lambda p: p.symlink_to("/dev/urandom"))
    add("dir.eie", lambda p: p.mkdir())
    add("loop.eie", lambda p: p.symlink_to(p))
    add("to-fifo.npy", lambda p: p.symlink_to(tmp_path / "fifo.eie"))
    add("empty.npz", lambda p: p.write_bytes(b""))
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock.eie"))
        specials.append(tmp_path / "sock.eie")
    except OSError:  # path too long for a socket: skip that kind
        pass
    for what in ("eie", "input"):
        report = fz.run_mutants(specials, tmp_path, what=what)
        statuses = {p.name: report.outcomes[i].status for i, p in enumerate(specials)}
        assert set(statuses.values()) == {"rejected"}, (what, {p.name: o.detail[:300] for p, o in zip(specials, report.outcomes.values()) if o.status != "rejected"})
    dangling = tmp_path / "dangling.eie"  # a missing file, as Python reports one (the CLI: exit 2 naming it)
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        eie.load(dangling)
    before = {p.name: (p.is_symlink(), p.exists()) for p in specials}
    layer = eie.compress_matrix(__import__("numpy").ones((4, 4), "float32"), density=0.5, n_pe=1)
    for p in specials:
        if p.name == "empty.npz":
            continue  # a regular file: it may be replaced
        with pytest.raises(eie.EIEError):
            eie.save(layer, p)
    assert before == {p.name: (p.is_symlink(), p.exists()) for p in specials}
    assert os.path.exists("/dev/null") and not Path("/dev/null").is_file()
    sock.close()
