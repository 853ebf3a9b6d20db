"""The house rules, read from the source: import layering, third-party imports per floor, module size, and no
test code in the installed package. Each test lists every offence it finds, by file and import."""

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The folders the package installs from, and the dotted names they install as (pyproject's package-dir).
PACKAGE_ROOTS = {"eie_runtime": "eie_runtime", "kernels": "eie_runtime.kernels", "converters": "eie_runtime.converters"}

KERNELS, CORE, CONVERTERS, FRONT_ENDS = 1, 2, 3, 4
FLOOR_NAMES = {KERNELS: "kernels", CORE: "core", CONVERTERS: "converters", FRONT_ENDS: "front ends"}
FRONT_END_PREFIXES = ("eie_runtime.torch", "eie_runtime.onnx", "eie_runtime.hardware", "eie_runtime.cli",
                      "eie_runtime.demo")
# The package's own __init__ is the public face: it re-exports from every floor (docs/design.md, section 5).
FACADE = "eie_runtime"

KERNEL_THIRD_PARTY = {"numpy", "numba", "llvmlite"}
MAX_LINES = 500
SIZE_REASON = re.compile(r"^# size:\s*\S")


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def floor_of(name: str) -> int | None:
    """The floor of a dotted eie_runtime name; None for anything outside the package."""
    if _within(name, "eie_runtime.kernels"):
        return KERNELS
    if _within(name, "eie_runtime.converters"):
        return CONVERTERS
    if name == FACADE or any(_within(name, p) for p in FRONT_END_PREFIXES):
        return FRONT_ENDS
    if _within(name, "eie_runtime"):
        return CORE
    return None


@dataclass(frozen=True)
class Module:
    name: str  # dotted, as installed
    path: Path
    is_package: bool

    @property
    def rel(self) -> str:
        return self.path.relative_to(REPO).as_posix()

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def package_modules() -> list[Module]:
    modules = []
    for folder, dotted in PACKAGE_ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            is_package = parts[-1] == "__init__"
            parts = parts[:-1] if is_package else parts
            modules.append(Module(".".join((dotted,) + parts), path, is_package))
    return modules


@dataclass(frozen=True)
class Import:
    target: str  # the dotted module it lands on, relative imports resolved
    line: int
    text: str  # the statement as written


def imports_of(module: Module, known: set[str]) -> list[Import]:
    """Every import of a module, at any depth (functions, conditionals, TYPE_CHECKING blocks included), and
    every importlib.import_module / __import__ call with a literal name."""
    tree = ast.parse(module.path.read_text(), filename=str(module.path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, ast.unparse(node)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.package.split(".")
                anchor = package[:len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                # `from pkg import sub` lands on the submodule when there is one, else on pkg itself
                sub = f"{base}.{alias.name}"
                found.append(Import(sub if sub in known else base, node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _call_name(node.func) in ("import_module", "__import__")):
            found.append(Import(node.args[0].value, node.lineno, ast.unparse(node)))
    return list(dict.fromkeys(found))  # `from x import a, b` lands twice on x: report it once


def _call_name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def required_dependencies() -> set[str]:
    """Import names of [project].dependencies: all that core and converters may use beside the stdlib."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower().replace("-", "_") for d in deps}


MODULES = package_modules()
KNOWN = {m.name for m in MODULES}
IMPORTS = {m: imports_of(m, KNOWN) for m in MODULES}


def _report(offences: list[str], what: str) -> str:
    return f"{len(offences)} {what}:\n  " + "\n  ".join(offences)


def test_the_walk_sees_every_floor():
    # guards the checks below against passing because they found nothing to read
    floors = {floor_of(m.name) for m in MODULES}
    assert floors == {KERNELS, CORE, CONVERTERS, FRONT_ENDS}, floors
    assert sum(len(v) for v in IMPORTS.values()) > 100


def test_no_import_climbs_to_a_higher_floor():
    offences = []
    for module, imports in IMPORTS.items():
        own = floor_of(module.name)
        for imp in imports:
            target = floor_of(imp.target)
            if target is not None and target > own:
                offences.append(f"{module.rel}:{imp.line} ({FLOOR_NAMES[own]}) imports {imp.target} "
                                f"({FLOOR_NAMES[target]}): {imp.text}")
    assert not offences, _report(offences, "imports climb the floors (kernels < core < converters < front ends)")


def test_third_party_imports_stay_on_their_floor():
    # kernels: numpy, numba, llvmlite; core and converters: the required dependencies; extras: front ends only
    allowed = {KERNELS: KERNEL_THIRD_PARTY, CORE: required_dependencies() | {"llvmlite"}}
    allowed[CONVERTERS] = allowed[CORE]
    offences = []
    for module, imports in IMPORTS.items():
        own = floor_of(module.name)
        if own == FRONT_ENDS:
            continue
        for imp in imports:
            root = imp.target.split(".")[0]
            if (floor_of(imp.target) is None and root not in sys.stdlib_module_names and root != "__future__"
                    and root not in allowed[own]):
                offences.append(f"{module.rel}:{imp.line} ({FLOOR_NAMES[own]}) imports {root}: {imp.text}")
    assert not offences, _report(offences, "third-party imports outside what their floor may use")


def test_the_package_imports_nothing_from_tests_or_bench():
    test_modules = {p.stem for p in (REPO / "tests").rglob("*.py")} | {"tests", "bench", "conftest"}
    offences = [f"{module.rel}:{imp.line} imports {imp.target}: {imp.text}"
                for module, imports in IMPORTS.items() for imp in imports
                if imp.target.split(".")[0] in test_modules]
    assert not offences, _report(offences, "imports of test or benchmark code from the installed package")


def test_every_kernel_is_used_by_the_package():
    # a kernel function nothing in the package (or bench/) calls is a test reference that gets installed
    users = [m.path for m in MODULES] + sorted((REPO / "bench").rglob("*.py"))
    used = set()
    for path in users:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.add(node.asname or node.name)
                used.add(node.name)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                used.add(node.value)  # __all__ entries, getattr by name
    offences = []
    for module in MODULES:
        if floor_of(module.name) != KERNELS:
            continue
        for node in ast.parse(module.path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name not in used:
                offences.append(f"{module.rel}:{node.lineno} {node.name}")
    assert not offences, _report(offences, "kernel functions nothing in the package or bench/ uses")


def test_no_module_over_500_lines_without_a_reason():
    offences = []
    for folder in (*PACKAGE_ROOTS, "bench", "tests"):
        for path in sorted((REPO / folder).rglob("*.py")):
            lines = path.read_text().splitlines()
            if len(lines) > MAX_LINES and not any(SIZE_REASON.match(line) for line in lines[:10]):
                offences.append(f"{path.relative_to(REPO).as_posix()}: {len(lines)} lines")
    assert not offences, _report(offences, f"modules over {MAX_LINES} lines without a '# size: <reason>' line in "
                                           f"their first 10")
