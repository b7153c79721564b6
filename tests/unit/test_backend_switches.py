"""A backend is one module registered once: no module outside the registry and the backend modules compares a
value with a backend's or a model format's name (``if cfg.backend == "triton"``); each asks the registry."""

from __future__ import annotations

import ast
from pathlib import Path

from podium.core.backend_registry import BACKENDS, FORMATS

PACKAGE = Path(__file__).resolve().parents[2] / "podium"
#: Where names may be spelled out: the registry, and the modules of the backends and formats themselves (not
#: the factory, which builds any of them from the registry).
ALLOWED = ("core/backend_registry.py", "backends/")
CHECKED = ("backends/factory.py",)
NAMES = set(BACKENDS) | set(FORMATS)


def _named(node: ast.AST, names: set[str]) -> bool:
    """A string constant that is one of ``names``, or a tuple/list/set of them."""
    if isinstance(node, ast.Constant):
        return node.value in names
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_named(e, names) for e in node.elts)
    return False


def switches(root: Path, names: set[str] = NAMES) -> list[str]:
    """Every comparison (``==``, ``!=``, ``in``, ``not in``) or ``match`` case against one of ``names`` in a
    module outside :data:`ALLOWED`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()
        if where.startswith(ALLOWED) and where not in CHECKED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare) and any(_named(n, names) for n in (node.left, *node.comparators)):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.MatchValue) and _named(node.value, names):
                found.append(f"{where}:{node.lineno}: case {ast.unparse(node.value)}")
    return found


def test_no_module_switches_on_a_backend_or_format_name() -> None:
    assert switches(PACKAGE) == [], "ask podium.core.backend_registry (backend_spec / format_spec) instead"


def test_a_switch_is_found(tmp_path: Path) -> None:
    root = tmp_path / "podium"
    (root / "measurement").mkdir(parents=True)
    (root / "backends").mkdir()
    (root / "measurement" / "session.py").write_text(
        'def f(cfg):\n    if cfg.backend == "triton":\n        return 1\n    return cfg.model_format in ("onnx", "x")\n'
        'def g(b):\n    match b:\n        case "local":\n            return 2\n'
        'def h(cfg):\n    return cfg.backend == "localhost" or spec.server\n'
    )
    (root / "backends" / "triton.py").write_text('def f(cfg):\n    return cfg.backend == "triton"\n')
    (root / "backends" / "factory.py").write_text('def f(cfg):\n    return cfg.backend != "synthetic"\n')
    assert switches(root) == [
        "backends/factory.py:2: cfg.backend != 'synthetic'",
        "measurement/session.py:2: cfg.backend == 'triton'",
        "measurement/session.py:4: cfg.model_format in ('onnx', 'x')",
        "measurement/session.py:7: case 'local'",
    ]
