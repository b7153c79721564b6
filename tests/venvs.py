"""Fresh virtual environments holding exactly what an install line installs, for install tests.

The dependencies are installed once per ``pyproject.toml`` and cached (``~/.cache/podium/venvs``);
podium itself is reinstalled from the working tree, non-editable, once per test session, so the test
sees what a user's ``pip install`` would give, with today's code. Venvs of older ``pyproject.toml`` files are
removed, but for the one used last if some session used it within a day: two of each kind at most.
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
#: The venv of another ``pyproject.toml`` used last is kept this long after its last use (another checkout may
#: still be running on it).
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
    """Remove the venvs of kind ``name`` other than ``keep``, except the most recently used one when some session
    used it within ``STALE_S`` (another checkout may be running on it); returns them. So a kind holds two venvs
    at most, however often ``pyproject.toml`` changes."""
    now = time.time() if now is None else now
    others = [other for other in CACHE.glob(f"{name}-*") if other != keep and other.is_dir()]
    by_use = sorted(others, key=_last_used, reverse=True)
    spared = by_use[:1] if by_use and now - _last_used(by_use[0]) <= STALE_S else []
    removed = []
    for other in by_use:
        if other in spared:
            continue
        shutil.rmtree(other, ignore_errors=True)
        Path(f"{other}.lock").unlink(missing_ok=True)  # cached_venv's build lock beside it
        removed.append(other)
    return removed


def _last_used(venv: Path) -> float:
    used = venv / ".used"
    return (used if used.exists() else venv).stat().st_mtime


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
