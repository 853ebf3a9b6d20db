"""Unlabeled text for bench/quality.py, gathered from this machine without labels.

Two disjoint sources, split by a hash of the Python module name:

- **training text** (what distillation sees): the one-line summaries of every
  Debian package apt knows (``apt-cache dumpavail``), and the docstrings
  (whole, whitespace-normalised, up to 600 characters; modules, classes,
  functions, methods) of the standard library modules whose name hashes to
  buckets 2-9, the two sources alternating;
- **evaluation pairs** (paraphrase ranking): from the standard library modules
  in buckets 0-1, every docstring with a summary line and a body: the pair is
  (first line, the rest of the docstring, up to 400 characters), which
  restates and expands the summary. A pair is kept when the summary has at
  least 15 characters and the body at least 60, and neither text occurs in the
  training text (exact match after whitespace normalisation); repeated texts
  are dropped. The task: for each summary, find its own body among all the
  pairs' bodies (top-1 by embedding cosine).

No labels are invented: a pair is what one docstring's author wrote twice.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import subprocess
import sys
import warnings

SKIP_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "test", "ensurepip",
                "pydoc_data", "venv", "__main__", "__phello__"}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _bucket(name: str) -> int:
    return hashlib.sha256(name.encode()).digest()[0] % 10


def debian_packages() -> list[tuple[str, str, str]]:
    """``(package, summary, long description)`` from ``apt-cache dumpavail`` (empty if apt is absent;
    the long description is empty where apt holds only its md5, as here)."""
    try:
        out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    seen, pkgs = set(), []
    for block in out.split("\n\n"):
        m = re.search(r"^Package: (\S+)", block, re.M)
        d = re.search(r"^Description(?:-en)?: (.*)\n((?: .*\n?)*)", block, re.M)
        if not m or not d or m.group(1) in seen:
            continue
        seen.add(m.group(1))
        lines = [ln[1:] for ln in d.group(2).splitlines()]
        long = "\n".join("" if ln.strip() == "." else ln for ln in lines)
        pkgs.append((m.group(1), d.group(1).strip(), long))
    return pkgs


def stdlib_docstrings() -> dict[str, list[str]]:
    """Module name -> the full docstrings (cleaned by ``inspect.getdoc``) of it, its classes, functions, methods."""
    out: dict[str, list[str]] = {}
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP_MODULES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                mod = importlib.import_module(name)
            except Exception:  # platform-specific modules
                continue
            docs = []
            objs = [mod] + [v for k, v in sorted(vars(mod).items()) if not k.startswith("_")
                            and (inspect.isclass(v) or inspect.isfunction(v) or inspect.isbuiltin(v))]
            for obj in objs:
                members = [obj] + ([v for k, v in sorted(vars(obj).items()) if not k.startswith("_") and callable(v)]
                                   if inspect.isclass(obj) else [])
                for o in members:
                    doc = inspect.getdoc(o) if isinstance(getattr(o, "__doc__", None), str) else None
                    if doc:
                        docs.append(doc)
            out[name] = list(dict.fromkeys(docs))
    return out


def gather(n_eval: int = 400, seed: int = 0) -> tuple[list[str], list[tuple[str, str]]]:
    """``(training texts, evaluation pairs (summary, body))``, disjoint as the module docstring says.

    The training texts alternate docstring paragraphs and package summaries
    while both last (so any prefix is about half of each), then the rest.
    """
    import random
    summaries = [_norm(summary) for _, summary, _ in debian_packages()]
    paragraphs, candidates = [], []
    for mod, docs in stdlib_docstrings().items():
        if _bucket(mod) > 1:
            paragraphs.extend(_norm(d)[:600] for d in docs)
            continue
        for d in docs:
            first, _, rest = d.partition("\n")
            candidates.append((_norm(first), _norm(rest)[:400]))
    rng = random.Random(seed)
    rng.shuffle(summaries)
    rng.shuffle(paragraphs)
    # alternate the two sources while both last: the first texts are half docstrings, half package summaries
    mixed = [t for pair in zip(paragraphs, summaries) for t in pair]
    mixed += paragraphs[len(summaries):] + summaries[len(paragraphs):]
    train = list(dict.fromkeys(t for t in mixed if len(t) >= 20))
    seen_train = set(train)
    pairs, seen = [], set()
    for s, l in candidates:
        if len(s) < 15 or len(l) < 60 or s in seen_train or l in seen_train or s in seen or l in seen:
            continue
        seen.update((s, l))
        pairs.append((s, l))
    random.Random(seed).shuffle(pairs)
    return train, pairs[:n_eval]


if __name__ == "__main__":
    tr, ev = gather()
    print(f"{len(tr)} training texts, {len(ev)} evaluation pairs")
    for s, l in ev[:3]:
        print(f"- {s}\n  {l[:150]}")
