"""Several processes opening one fresh sqlite MLflow store at once (workers, aggregator, producer all
start together in the demo) must not race MLflow's schema creation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from podium.tracking.tracker import MlflowTracking
from podium.core.tags import TagsRegistry
MlflowTracking.connect(sys.argv[1], TagsRegistry()).benchmark_experiment_id()
"""


def test_concurrent_first_opens_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _ in results] == [0] * 5, [err[-1500:] for code, err in results if code]
