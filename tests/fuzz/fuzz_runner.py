"""The fuzzers' child-process runner: mutants run many per child (``eie_fuzz_child.py``); the child logs
the start and end of each, so a crash or a hang names its mutant, and a crashed batch is re-run one mutant
per child to confirm it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CHILD = Path(__file__).with_name("eie_fuzz_child.py")
HANG_S = 10.0  # a mutant running longer than this is a hang
START_S = 120.0  # child start-up (imports, Numba cache) before its first mutant

# ------------------------------------------------------------------- running
@dataclass
class Outcome:
    status: str  # "ran", "rejected" (at load), "run_refused" (EIEError running a loaded graph),
    #              "error" (any other exception), "crash", "hang"
    detail: str = ""
    seconds: float = 0.0
    rss_mb: float = 0.0  # the child's peak resident memory when this mutant finished (bounds this mutant's peak)


@dataclass
class FuzzReport:
    outcomes: dict = field(default_factory=dict)  # index -> Outcome
    children: int = 0

    def peak_rss_mb(self) -> float:
        """The largest resident memory any child reached: every mutant's peak is below it."""
        return max((o.rss_mb for o in self.outcomes.values()), default=0.0)

    def counts(self) -> dict:
        out = {"ran": 0, "rejected": 0, "run_refused": 0, "error": 0, "crash": 0, "hang": 0}
        for o in self.outcomes.values():
            out[o.status] += 1
        return out


def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("NUMBA_NUM_THREADS", "2")
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def _complete_lines(log: Path) -> list[str]:
    """The log's finished lines: the child may be half-way through writing the last one."""
    text = log.read_text(errors="replace")
    return text.split("\n")[:-1]


def _run_child(paths: list[Path], work: Path, tag: str, what: str = "eie") -> tuple[dict, list[int], int | None, str]:
    """Run ``paths`` in one child. Returns (results by position, started-but-unfinished
    positions, exit code or None when killed for a hang, stderr tail)."""
    manifest = work / f"{tag}.manifest"
    log = work / f"{tag}.log"
    manifest.write_text("\n".join(str(p) for p in paths))
    log.write_text("")
    err_path = work / f"{tag}.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(CHILD), str(manifest), str(log), what],
                                stdout=subprocess.DEVNULL, stderr=err, env=_child_env())
        t0 = time.monotonic()
        current, since = None, t0
        rc = None
        while True:
            rc = proc.poll()
            lines = _complete_lines(log)
            begun = [int(ln[2:]) for ln in lines if ln.startswith("B ")]
            done = {int(json.loads(ln[2:])["i"]) for ln in lines if ln.startswith("R ")}
            running = [i for i in begun if i not in done]
            now = time.monotonic()
            if rc is not None:
                break
            if running:
                if running[-1] != current:
                    current, since = running[-1], now
                if now - since > HANG_S:
                    proc.kill()
                    proc.wait()
                    rc = None
                    break
            elif now - t0 > START_S and not begun:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"fuzz child did not start within {START_S} s: {err_path.read_text()[-2000:]}")
            time.sleep(0.05)
    results = {}
    lines = _complete_lines(log)
    for ln in lines:
        if ln.startswith("R "):
            r = json.loads(ln[2:])
            results[r["i"]] = Outcome(r["status"], r["detail"], r["seconds"], r.get("rss_mb", 0.0))
    begun = [int(ln[2:]) for ln in lines if ln.startswith("B ")]
    unfinished = [i for i in begun if i not in results]
    return results, unfinished, rc, err_path.read_text(errors="replace")[-3000:]


def run_mutants(paths: list[Path], work: Path, batch: int = 250, progress=None, what: str = "eie") -> FuzzReport:
    """Run every mutant file in child processes, ``batch`` per child; ``what`` is "eie"
    (load and run) or "onnx" (`eie convert`, then load and run)."""
    report = FuzzReport()
    # one unmeasured child first: it compiles every kernel into Numba's cache (LLVM's memory while compiling
    # is not a mutant's), so that the measured children load them and their peak is the mutants'
    _run_child([], work, "warm", what)
    pos = 0
    while pos < len(paths):
        chunk = paths[pos:pos + batch]
        res, unfinished, rc, err = _run_child(chunk, work, f"b{pos}", what)
        report.children += 1
        for i, o in res.items():
            report.outcomes[pos + i] = o
        if rc is None:  # killed: the unfinished mutant hung
            i = unfinished[-1]
            report.outcomes[pos + i] = Outcome("hang", f"still running after {HANG_S} s")
            pos += i + 1
        elif rc != 0 or len(res) < len(chunk):
            # the child died: re-run that batch one mutant per child to name the culprit(s)
            start = len(res)
            for j in range(len(chunk)):
                r1, unf1, rc1, err1 = _run_child([chunk[j]], work, f"s{pos + j}", what)
                report.children += 1
                if r1 and rc1 == 0:
                    report.outcomes[pos + j] = r1[0]
                elif rc1 is None:
                    report.outcomes[pos + j] = Outcome("hang", f"still running after {HANG_S} s (alone)")
                else:
                    report.outcomes[pos + j] = Outcome("crash", f"exit code {rc1}: {err1[-1500:]}")
            if not any(report.outcomes[pos + j].status == "crash" for j in range(len(chunk))):
                # no mutant crashes alone: blame the one the batch died in
                report.outcomes[pos + start] = Outcome("crash", f"batch died (exit {rc}) here, not alone: {err[-1500:]}")
            pos += len(chunk)
        else:
            pos += len(chunk)
        if progress is not None:
            progress(min(pos, len(paths)))
    return report


def keep_findings(paths: list[Path], outcomes: dict, what: list[str]) -> Path | None:
    """Copy every mutant that errored, crashed or hung (pytest deletes its tmp dirs) to
    ``$EIE_FUZZ_FINDINGS`` (default: <tmp>/eie-fuzz-findings) with a note of what it is."""
    import shutil
    import tempfile

    bad = {i: o for i, o in outcomes.items() if o.status in ("error", "crash", "hang")}
    if not bad:
        return None
    out = Path(os.environ.get("EIE_FUZZ_FINDINGS", Path(tempfile.gettempdir()) / "eie-fuzz-findings"))
    out.mkdir(parents=True, exist_ok=True)
    for i, o in bad.items():
        shutil.copyfile(paths[i], out / paths[i].name)
        (out / (paths[i].name + ".txt")).write_text(f"{what[i]}\n{o.status}: {o.detail}\n")
    return out
