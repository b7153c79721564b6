"""``podium select`` on a store written by plain MLflow client code: the command line run in this process, and
once as a real process with only the environment a user's shell gives it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from podium.demo.synthetic_store import StoreSpec, generate_store
from tests.cli import podium_in_process

PODIUM = [sys.executable, "-m", "podium"]
CANDIDATE_KEYS = {
    "trial_key_hash",
    "benchmark_key",
    "f1_score",
    "latency_ms",
    "benchmark_runs_count",
    "benchmark_run_id",
    "trial_run_id",
    "artifact_run_id",
    "backbone",
    "unstable",
    "doubt",
    "p99_ms",
    "latency_figure",
}
SELECTION_KEYS = {
    "study_key_hash",
    "benchmark_config_hash",
    "latency",
    "best",
    "challenger",
    "note",
    "candidates",
    "excluded",
}


def podium(*args: str) -> subprocess.CompletedProcess[str]:
    return podium_in_process(*args)


@pytest.fixture
def generated(store_uri: str):
    return generate_store(store_uri, StoreSpec(studies=2, trials_per_study=3, benchmarks_per_trial=3))


def test_json_output_contract(store_uri: str, generated, tmp_path: Path) -> None:
    out = podium("select", "--tracking-uri", store_uri, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert list(doc) == ["selections", "unselected"] and doc["unselected"] == []
    assert {s["study_key_hash"] for s in doc["selections"]} == set(generated.studies)
    for sel in doc["selections"]:
        assert set(sel) >= SELECTION_KEYS  # (with the readable labels podium adds beside them)
        assert sel["latency"] == {
            "statistic": "p50",
            "batch_size": 1,
            "metric": "latency_batch_1_p50_ms",
            "across_runs": "median",
            "window": 10,
        }
        assert len(sel["candidates"]) == 3 and sel["excluded"] == []
        # the top-ranked one is the best, or a challenger within the noise of the best (then the note says so)
        top = sel["candidates"][0]
        assert sel["best"] == top if sel["challenger"] is None else (sel["challenger"] == top and sel["note"])
        for cand in sel["candidates"]:
            # the default constraint policy has no composite score (labels may add the trial's params/metrics)
            assert set(cand) >= CANDIDATE_KEYS and "composite_score" not in cand
            assert cand["benchmark_runs_count"] == 3 and cand["latency_figure"] == "p50, median of 3 runs"
            assert cand["artifact_run_id"] != cand["trial_run_id"]  # refit runs exist
    weighted = tmp_path / "weighted.yaml"
    weighted.write_text("selection:\n  policy: weighted\n")
    out = podium("select", "--tracking-uri", store_uri, "--json", "--config", str(weighted))
    assert all(
        CANDIDATE_KEYS | {"composite_score"} <= set(c)
        for s in json.loads(out.stdout)["selections"]
        for c in s["candidates"]
    )


def test_tolerance_has_no_composite_and_aggregation_flag_applies(store_uri: str, generated, tmp_path: Path) -> None:
    cfg = tmp_path / "sel.yaml"
    cfg.write_text("selection:\n  policy: tolerance\n  accuracy_tolerance: 1.0\n")
    by_method = {}
    for method in ("latest", "median", "mean"):
        out = podium("select", "--tracking-uri", store_uri, "--json", "--config", str(cfg), "--aggregation", method)
        assert out.returncode == 0, out.stderr
        sels = json.loads(out.stdout)["selections"]
        assert all(set(c) >= CANDIDATE_KEYS and "composite_score" not in c for s in sels for c in s["candidates"])
        # tolerance 1.0 (the older key, still read): everyone is in the band, so the fastest aggregated latency
        # ranks first (and is the best, or a challenger within the noise of it)
        for s in sels:
            assert s["candidates"][0]["latency_ms"] == min(c["latency_ms"] for c in s["candidates"])
        by_method[method] = sorted(c["latency_ms"] for s in sels for c in s["candidates"])
    assert by_method["latest"] != by_method["median"] != by_method["mean"]


def test_readable_table(store_uri: str, generated) -> None:
    out = podium("select", "--tracking-uri", store_uri)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("★") == 2 and "p50 per run, median across runs" in " ".join(out.stdout.split())


def test_exit_3_when_nothing_to_select(store_uri: str) -> None:
    out = podium("select", "--tracking-uri", store_uri, "--json")
    assert out.returncode == 3
    assert json.loads(out.stdout) == {"selections": [], "unselected": []}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "nope"], "no active experiment named 'nope'"),
        (["--aggregation", "best"], "Invalid value for '--aggregation'"),
        (["--config", "/nonexistent.yaml"], "/nonexistent.yaml: file not found"),
    ],
)
def test_exit_2_on_bad_input(store_uri: str, generated, args: list[str], message: str) -> None:
    out = podium("select", "--tracking-uri", store_uri, *args)
    assert out.returncode == 2
    assert message in " ".join(out.stderr.split())


def test_exit_2_on_missing_store(tmp_path: Path) -> None:
    out = podium("select", "--tracking-uri", f"sqlite:///{tmp_path}/none.db")
    assert out.returncode == 2 and "no MLflow store" in out.stderr


def test_experiment_filter_and_env_tracking_uri(store_uri: str, generated, tmp_path: Path) -> None:
    env_run = subprocess.run(
        [*PODIUM, "select", "--json", "-e", "training"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PODIUM_TRACKING_URI": store_uri, "PATH": "/usr/bin:/bin"},
    )
    assert env_run.returncode == 0, env_run.stderr
    assert len(json.loads(env_run.stdout)["selections"]) == 2


def test_unstable_candidates_are_shown_with_their_reason_and_compete_only_when_let_in(
    store_uri: str, tmp_path: Path
) -> None:
    """Trial 0's runs never settled: by default it is shown under "excluded" with its reason and does not compete;
    with --include-unstable it competes, marked; an older file's exclude_unstable: true means the default."""
    generate_store(store_uri, StoreSpec(studies=1, trials_per_study=3, benchmarks_per_trial=3, unstable_trials=(0,)))
    out = podium("select", "--tracking-uri", store_uri, "--json")
    assert out.returncode == 0, out.stderr
    (sel,) = json.loads(out.stdout)["selections"]
    (marked,) = sel["excluded"]
    assert marked["doubt"] == "unstable" and "selection.include_unstable" in marked["excluded"]
    assert len(sel["candidates"]) == 2 and not any(c["unstable"] for c in sel["candidates"])
    assert marked["trial_key_hash"] not in {c["trial_key_hash"] for c in sel["candidates"]}
    out = podium("select", "--tracking-uri", store_uri, "--json", "--include-unstable")
    (sel,) = json.loads(out.stdout)["selections"]
    assert len(sel["candidates"]) == 3 and sel["excluded"] == []
    assert [c["trial_key_hash"] for c in sel["candidates"] if c["unstable"]] == [marked["trial_key_hash"]]
    older = tmp_path / "older.yaml"
    older.write_text("benchmark:\n  latency_metric: latency_batch_1_p50_ms\n  exclude_unstable: true\n")
    out = podium("select", "--tracking-uri", store_uri, "--json", "--config", str(older))
    assert out.returncode == 0, out.stderr
    (sel,) = json.loads(out.stdout)["selections"]
    assert [c["trial_key_hash"] for c in sel["excluded"]] == [marked["trial_key_hash"]]
    table = podium("select", "--tracking-uri", store_uri)
    assert table.returncode == 0 and table.stdout.count("⚠") == 2, table.stdout  # the row and the note
    text = " ".join(table.stdout.split())
    assert "unstable: the representative run's windows never agreed" in text and "in doubt" in text


def test_a_study_with_only_doubtful_runs_has_no_best_and_says_why(store_uri: str) -> None:
    generate_store(store_uri, StoreSpec(studies=1, trials_per_study=1, benchmarks_per_trial=2, unstable_trials=(0,)))
    out = podium("select", "--tracking-uri", store_uri, "--json")
    assert out.returncode == 3, out.stderr
    doc = json.loads(out.stdout)
    assert doc["selections"] == []
    ((only,),) = [u["excluded"] for u in doc["unselected"]]
    assert only["doubt"] == "unstable" and only["latency_figure"] == "p50, median of 2 runs"
    table = podium("select", "--tracking-uri", store_uri)
    assert table.returncode == 3 and "no best; trial" in table.stdout and "does not compete: unstable" in table.stdout
