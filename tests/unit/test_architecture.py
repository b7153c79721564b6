"""The house rules of the layout, read from the source (every import, lazy ones inside functions too).

- the package root holds only entry points;
- everything imports downward (a layer uses its own package and the layers below);
- producers, workers and aggregator never import one another;
- the core imports no I/O library and reads no file or environment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "podium"

#: Lower layers first. A module may import its own package and any package of a lower layer.
LAYERS: list[set[str]] = [
    {"errors"},
    {"core"},
    {"settings"},
    {"tracking", "streams", "backends", "monitoring"},
    {"broker", "measurement"},
    {"producers", "workers", "aggregator"},
    {"demo", "training", "board"},
    {"cli"},
    {"__init__", "__main__"},
]
ROOT_MODULES = {"__init__.py", "__main__.py", "errors.py"}
#: What the pure core may import besides the standard library's pure modules and itself.
CORE_THIRD_PARTY = {"pydantic"}
#: Standard-library modules that do I/O, read the environment or the clock.
IO_MODULES = {
    "os",
    "io",
    "socket",
    "subprocess",
    "shutil",
    "tempfile",
    "sqlite3",
    "urllib",
    "http",
    "time",
    "threading",
    "multiprocessing",
    "fcntl",
    "signal",
    "glob",
}
#: Calls that read or write files, whatever object they are called on.
IO_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "exists", "is_file", "mkdir", "getenv"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def package_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def layer(package: str) -> int:
    for i, names in enumerate(LAYERS):
        if package in names:
            return i
    raise AssertionError(f"package {package!r} has no layer in LAYERS: add it where it belongs")


def imports(path: Path) -> list[str]:
    """Every module name imported anywhere in the file (absolute imports only: podium uses no relative ones)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; podium imports absolutely"
            out.append(node.module or "")
            if node.module == "podium":  # from podium import x: x is a module or package of the root
                out += [f"podium.{a.name}" for a in node.names]
    return out


def test_the_root_holds_only_entry_points() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ROOT_MODULES)
    assert loose == [], f"modules loose in podium/: {loose}; move each into the subpackage of its job"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downward(path: Path) -> None:
    own = package_of(path)
    own_layer = layer(own)
    for name in imports(path):
        parts = name.split(".")
        if parts[0] != "podium" or len(parts) < 2:
            continue
        target = parts[1]
        if target == own:
            continue
        target_layer = layer(target)
        assert target_layer < own_layer, (
            f"{path.relative_to(PACKAGE)} ({own}, layer {own_layer}) imports {name} ({target}, layer "
            f"{target_layer}): imports must point to a lower layer; move what both need below them"
        )


def test_streaming_parts_never_import_one_another() -> None:
    parts = {"producers", "workers", "aggregator"}
    offending = [
        f"{p.relative_to(PACKAGE)} imports {name}"
        for p in modules()
        if package_of(p) in parts
        for name in imports(p)
        if name.startswith("podium.") and name.split(".")[1] in parts - {package_of(p)}
    ]
    assert offending == []


CORE = sorted((PACKAGE / "core").glob("*.py"))


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_imports_no_io_library(path: Path) -> None:
    import sys

    for name in imports(path):
        top = name.split(".")[0]
        if top in ("podium", "__future__"):
            assert not name.startswith("podium.") or name.split(".")[1] in ("core", "errors"), name
            continue
        assert top not in IO_MODULES, f"core/{path.name} imports {name}, which does I/O"
        assert top in sys.stdlib_module_names or top in CORE_THIRD_PARTY, (
            f"core/{path.name} imports {name}; the core may use only the standard library and {CORE_THIRD_PARTY}"
        )


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_reads_no_file_or_environment(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert called not in IO_CALLS, f"core/{path.name}:{node.lineno} calls {called}(): the core does no I/O"
        if isinstance(node, ast.Attribute) and node.attr == "environ":
            raise AssertionError(f"core/{path.name}:{node.lineno} reads the environment")


def test_the_rules_can_fail(tmp_path: Path) -> None:
    """The checks above catch what they claim to: an upward import and an I/O call in the core."""
    upward = tmp_path / "x.py"
    upward.write_text("from podium.workers.execute import execute\n")
    assert "podium.workers.execute" in imports(upward)
    assert layer("workers") > layer("core")
    reader = tmp_path / "y.py"
    reader.write_text("from pathlib import Path\nPath('a').read_text()\n")
    calls = [getattr(n.func, "attr", None) for n in ast.walk(ast.parse(reader.read_text())) if isinstance(n, ast.Call)]
    assert "read_text" in calls and "read_text" in IO_CALLS
