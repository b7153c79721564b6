"""`podium report`: a valid PNG with one point per candidate, tables, a selection run in MLflow."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
from mlflow import MlflowClient

from podium.demo.synthetic_store import StoreSpec, generate_store


def podium_report(store_uri: str, out: Path, selection_yaml: str) -> subprocess.CompletedProcess[str]:
    """``podium report`` as a user runs it, with a selection config of ``selection_yaml`` (written beside ``out``)."""
    config = out.parent / f"{out.name}-selection.yaml"
    config.write_text(selection_yaml)
    return subprocess.run(
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
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_files_and_selection_run(store_uri: str, tmp_path: Path) -> None:
    store = generate_store(store_uri, StoreSpec(studies=1, trials_per_study=5, benchmarks_per_trial=2))
    out = tmp_path / "report"
    run = podium_report(store_uri, out, "selection:\n  policy: tolerance\n  accuracy_tolerance: 0.05\n")
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


def load_metrics(points: list[tuple[int, float, float]], sla: float, at_sla: float) -> dict[str, float]:
    """A load benchmark's metrics as a worker logs them: per closed-loop level its throughput and p99, the
    budget and the throughput at it."""
    from podium.core.metric_names import LOAD_SLA, THROUGHPUT_AT_SLA, load_level_name, load_metric

    out = {THROUGHPUT_AT_SLA: at_sla, LOAD_SLA: sla}
    for concurrency, throughput, p99 in points:
        level = load_level_name(concurrency)
        out |= {load_metric(level, "throughput_per_s"): throughput, load_metric(level, "p99_ms"): p99}
    return out


def test_report_draws_latency_against_throughput_for_runs_with_load_levels(
    store_uri: str, client: MlflowClient, tracking, tmp_path: Path
) -> None:
    """Two models measured at load levels and one without: the report draws a curve per load-measured model
    (p99 against throughput in level order), the budget, the chosen one marked, beside the Pareto chart; the
    third model is in the table, not on the curves."""
    from podium.aggregator.report import load_series, run_metrics_of, write
    from podium.core.config import SelectionConfig
    from podium.core.state import select_all
    from podium.core.validation import parse_model
    from tests.pipeline_helpers import committed_result, trial_run

    study, slow, fast, serial = "s" * 64, "1" * 64, "2" * 64, "3" * 64
    for trial in (slow, fast, serial):
        trial_run(client, study, trial, 0.9)
    curves = {
        slow: load_metrics([(1, 90.0, 12.0), (2, 140.0, 18.0), (4, 160.0, 35.0)], 20.0, 144.7),
        fast: load_metrics([(1, 180.0, 6.0), (2, 330.0, 9.0), (4, 420.0, 24.0)], 20.0, 396.7),
    }
    first = int(time.time() * 1000) - 60_000
    for i, trial in enumerate((fast, slow)):  # one run each: the first stays best (speed alone never promotes)
        committed_result(tracking, None, study, trial, 5.0, f"c-{i}", start_time=first + i, extra_metrics=curves[trial])
    committed_result(tracking, None, study, serial, 1.0, "c-serial", start_time=first + 2)
    config = parse_model(SelectionConfig, {"selection": {"policy": "throughput_at_sla"}}, "test")
    ids = tracking.experiment_ids()
    (sel,), _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), config)
    assert sel.best.trial_key_hash == fast

    series = load_series(sel, run_metrics_of(tracking, sel))
    assert series["sla_p99_ms"] == 20.0
    drawn = {s["trial_key_hash"]: s for s in series["curves"]}
    assert drawn.keys() == {slow, fast}  # the serial-only model has no curve
    assert drawn[fast]["chosen"] and not drawn[slow]["chosen"] and drawn[fast]["throughput_at_sla_per_s"] == 396.7
    assert [(p["level"], p["throughput_per_s"], p["p99_ms"]) for p in drawn[slow]["curves"]["concurrency"]] == [
        ("c1", 90.0, 12.0),
        ("c2", 140.0, 18.0),
        ("c4", 160.0, 35.0),
    ]

    files = write(sel, config, tmp_path / "out", None, run_metrics_of(tracking, sel))
    assert files.load == series and files.load_chart is not None
    assert files.load_chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files.html.read_text()
    assert f"<img src='{files.chart.name}'><img src='{files.load_chart.name}'>" in page  # side by side
    assert (
        "throughput/s at SLA" in page
        and f"![latency vs throughput]({files.load_chart.name})" in files.markdown.read_text()
    )
    # without load levels nothing more is drawn
    plain = write(sel, config, tmp_path / "plain", None, {})
    assert plain.load_chart is None and plain.load is None and "load-" not in plain.html.read_text()

    out = tmp_path / "cli"
    run = podium_report(store_uri, out, "selection:\n  policy: throughput_at_sla\n")
    assert run.returncode == 0, run.stderr
    assert "(3 candidates," in run.stdout and "(2 load curves)" in run.stdout
    assert len(list(out.glob("load-*.png"))) == 1
