"""`podium demo` as a new user runs it: twice (the second run reuses every benchmark), and Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.server


def demo(home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podium", "demo", "--quick", "--no-live", "--home", str(home), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )


def count(output: str, label: str) -> int:
    match = re.search(rf"{label}[^│]*│\s*(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1))


def processes_of(home: Path) -> list[int]:
    """PIDs whose environment points at this demo's home (workers, aggregator) or whose command line does."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(home).encode() in blob:
            pids.append(int(entry.name))
    return pids


PODIUM_SELECT = [sys.executable, "-m", "podium", "select", "--json"]


def test_demo_twice_second_run_reuses_everything(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    first = demo(home)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (count(first.stdout, "benchmarks measured"), count(first.stdout, "benchmarks failed")) == (3, 0)
    assert "best model" in first.stdout and "mlflow ui --backend-store-uri" in first.stdout
    second = demo(home)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert count(second.stdout, "benchmarks measured") == 0
    assert count(second.stdout, r"benchmarks reused \(same") == 3
    assert processes_of(home) == []
    select = subprocess.run(
        # as the demo selects: its results compete even when in doubt (a busy machine; podium.demo.run.DEMO_SELECTION)
        [*PODIUM_SELECT, "--include-unstable", "--tracking-uri", f"sqlite:///{home / 'mlflow.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert select.returncode == 0 and '"benchmark_runs_count": 1' in select.stdout


def test_ctrl_c_stops_everything_it_started(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "podium", "demo", "--quick", "--no-live", "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(processes_of(home)) < 3:
            time.sleep(0.5)
        assert len(processes_of(home)) >= 3  # workers and aggregator are up
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and processes_of(home):
        time.sleep(0.5)
    assert processes_of(home) == []
