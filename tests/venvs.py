"""Fresh virtual environments holding exactly what an install line installs, for install tests.

The dependencies are installed once per ``pyproject.toml`` and cached (``~/.cache/podium/venvs``);
podium itself is reinstalled from the working tree, non-editable, once per test session, so the test
sees what a user's ``pip install`` would give, with today's code.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.servers import unavailable

CACHE = Path(os.environ.get("PODIUM_VENV_CACHE", Path.home() / ".cache" / "podium" / "venvs"))
#: The Dockerfile's install lines, with torch taken from the local wheel (no network to the PyTorch index).
DOCKERFILE_INSTALL = (["torch==2.13.0"], [".[triton]"])
BARE_INSTALL: tuple[list[str], ...] = (["."],)
_fresh: dict[str, Path] = {}


def _pip(venv: Path, *args: str, timeout: float = 1200) -> None:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        unavailable(f"pip install {' '.join(args)} failed in {venv}: {done.stderr[-1500:]}")


def venv_with(name: str, *installs: list[str]) -> Path:
    """A venv where each of ``installs`` was run as ``pip install ARGS`` in order; returns its bin/ folder."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + repr(installs).encode()).hexdigest()[:12]
    venv = CACHE / f"{name}-{key}"
    if name in _fresh:
        return _fresh[name]
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = venv / ".podium-deps-ok"
        if not marker.exists():
            with contextlib.suppress(FileNotFoundError):
                subprocess.run(["rm", "-rf", str(venv)], check=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            for args in installs:
                _pip(venv, *args)
            marker.touch()
        # today's podium, as a user's pip would install it (dependencies already there)
        _pip(venv, "--no-deps", "--force-reinstall", ".")
    _fresh[name] = venv / "bin"
    return _fresh[name]


def has_module(bin_dir: Path, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(bin_dir / "python"), "-c", code], timeout=60).returncode == 0
