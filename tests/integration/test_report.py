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


def test_report_labels_points_titles_the_measurement_and_marks_doubts(store_uri: str, tmp_path: Path) -> None:
    from podium.aggregator.report import UNSTABLE_NOTE, chart_title, device_of, point_label, write
    from podium.core.config import SelectionConfig
    from podium.core.state import select_all
    from podium.core.tags import TagsRegistry
    from podium.tracking.tracker import MlflowTracking

    generate_store(store_uri, StoreSpec(studies=1, trials_per_study=4, benchmarks_per_trial=2, unstable_trials=(1,)))
    tracking = MlflowTracking.connect(store_uri, TagsRegistry())
    ids = tracking.experiment_ids()
    config = SelectionConfig()
    (sel,), _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), config)
    labels = [point_label(c) for c in sel.candidates]
    assert all(
        c.trial_key_hash[:7] in label and c.backbone in label for c, label in zip(sel.candidates, labels, strict=True)
    )
    assert device_of(tracking, sel) is None  # the synthetic runs carry no device tag
    title = chart_title(sel, config, "Xeon (2 threads) | torch 2.13.0")
    assert title.startswith(f"study {sel.study_key_hash[:12]} · batch 1 · Xeon (2 threads)")
    assert "device unknown" in chart_title(sel, config, None)
    files = write(sel, config, tmp_path / "out", "Xeon")
    assert files.points == 4
    markdown = files.markdown.read_text()
    assert markdown.count("⚠") == 2 and UNSTABLE_NOTE in markdown  # one unstable row, and the note
    assert UNSTABLE_NOTE.split(":")[0] in files.html.read_text()
