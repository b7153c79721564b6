"""Fresh virtual environments holding exactly what an install line installs, for install tests.

The dependencies are installed once per ``pyproject.toml`` and cached (``~/.cache/podium/venvs``);
podium itself is reinstalled from the working tree, non-editable, once per test session, so the test
sees what a user's ``pip install`` would give, with today's code. A venv of an older ``pyproject.toml`` that no
session used for a day is removed, so the cache holds about one venv of each kind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import REPO
from tests.servers import cached_venv, unavailable

CACHE = Path(os.environ.get("PODIUM_VENV_CACHE", Path.home() / ".cache" / "podium" / "venvs"))
#: The Dockerfile's install lines, with torch taken from the local wheel (no network to the PyTorch index).
DOCKERFILE_INSTALL = (["torch==2.13.0"], [".[torch,triton,onnx,text]"])
BARE_INSTALL: tuple[list[str], ...] = (["."],)
#: README's lines for ONNX models and for test data of texts, run as written, one after the other.
ONNX_TEXT_INSTALL = ([".[onnx]"], [".[text]"])
_fresh: dict[str, Path] = {}
#: A venv of another ``pyproject.toml`` unused for this long is removed (another checkout may still use a
#: younger one).
STALE_S = 24 * 3600


def venv_with(name: str, *installs: list[str]) -> Path:
    """A venv where each of ``installs`` was run as ``pip install ARGS`` in order; returns its bin/ folder."""
    if name not in _fresh:
        key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + repr(installs).encode()).hexdigest()[:12]
        venv = cached_venv(CACHE / f"{name}-{key}", *installs, cwd=REPO)
        (venv / ".used").touch()
        prune_stale(name, keep=venv)
        # today's podium, as a user's pip would install it (its dependencies are there already)
        reinstall_podium(venv)
        _fresh[name] = venv / "bin"
    return _fresh[name]


def prune_stale(name: str, keep: Path, now: float | None = None) -> list[Path]:
    """Remove the venvs of kind ``name`` other than ``keep`` that no session used for ``STALE_S``; returns them."""
    now = time.time() if now is None else now
    removed = []
    for other in CACHE.glob(f"{name}-*"):
        if other == keep or not other.is_dir():
            continue
        used = other / ".used"
        last = (used if used.exists() else other).stat().st_mtime
        if now - last > STALE_S:
            shutil.rmtree(other, ignore_errors=True)
            Path(f"{other}.lock").unlink(missing_ok=True)  # cached_venv's build lock beside it
            removed.append(other)
    return removed


def reinstall_podium(venv: Path) -> None:
    """pip builds podium in the working tree (``build/``): one build at a time, whatever the test process."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "reinstall-podium.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", "."],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
    if done.returncode != 0:
        unavailable(f"cannot install today's podium into {venv}: {done.stderr[-800:]}")


def has_module(bin_dir: Path, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(bin_dir / "python"), "-c", code], timeout=60).returncode == 0
