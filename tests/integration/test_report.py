"""`podium report`: a valid PNG with one point per candidate, tables, a selection run in MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
from mlflow import MlflowClient

from podium.demo.synthetic_store import StoreSpec, generate_store


def test_report_files_and_selection_run(store_uri: str, tmp_path: Path) -> None:
    store = generate_store(store_uri, StoreSpec(studies=1, trials_per_study=5, benchmarks_per_trial=2))
    out = tmp_path / "report"
    cfg = tmp_path / "sel.yaml"
    cfg.write_text("selection:\n  policy: tolerance\n  accuracy_tolerance: 0.05\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "podium",
            "report",
            "--tracking-uri",
            store_uri,
            "--out",
            str(out),
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "(5 candidates)" in run.stdout
    (png,) = out.glob("*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = mpimg.imread(png).shape
    assert width > 300 and height > 200
    (md,) = out.glob("*.md")
    assert md.read_text().count("\n| ") == 7  # header, separator, 5 candidates
    client = MlflowClient(store_uri)
    (sel_run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`code.stage` = 'selection'"
    )
    assert sel_run.data.tags["code.grouping.study_key_hash"] == store.studies[0]
    names = {a.path for a in client.list_artifacts(sel_run.info.run_id, "selection")}
    assert {Path(n).suffix for n in names} == {".png", ".md", ".html"}
