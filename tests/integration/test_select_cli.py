"""``podium select`` as a user runs it: a real process on a store written by plain MLflow client code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from podium.demo.synthetic_store import StoreSpec, generate_store

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
}


def podium(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODIUM, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def generated(store_uri: str):
    return generate_store(store_uri, StoreSpec(studies=2, trials_per_study=3, benchmarks_per_trial=3))


def test_json_output_contract(store_uri: str, generated) -> None:
    out = podium("select", "--tracking-uri", store_uri, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert list(doc) == ["selections"]
    assert {s["study_key_hash"] for s in doc["selections"]} == set(generated.studies)
    for sel in doc["selections"]:
        assert set(sel) == {"study_key_hash", "benchmark_config_hash", "best", "candidates"}
        assert len(sel["candidates"]) == 3
        assert sel["best"] == sel["candidates"][0]
        for cand in sel["candidates"]:
            assert set(cand) == CANDIDATE_KEYS | {"composite_score"}
            assert cand["benchmark_runs_count"] == 3
            assert cand["artifact_run_id"] != cand["trial_run_id"]  # refit runs exist


def test_tolerance_has_no_composite_and_aggregation_flag_applies(store_uri: str, generated, tmp_path: Path) -> None:
    cfg = tmp_path / "sel.yaml"
    cfg.write_text("selection:\n  policy: tolerance\n  accuracy_tolerance: 1.0\n")
    by_method = {}
    for method in ("latest", "median", "mean"):
        out = podium("select", "--tracking-uri", store_uri, "--json", "--config", str(cfg), "--aggregation", method)
        assert out.returncode == 0, out.stderr
        sels = json.loads(out.stdout)["selections"]
        assert all(set(c) == CANDIDATE_KEYS for s in sels for c in s["candidates"])
        # tolerance 1.0: everyone is in the band, so the fastest aggregated latency wins
        for s in sels:
            assert s["best"]["latency_ms"] == min(c["latency_ms"] for c in s["candidates"])
        by_method[method] = sorted(c["latency_ms"] for s in sels for c in s["candidates"])
    assert by_method["latest"] != by_method["median"] != by_method["mean"]


def test_readable_table(store_uri: str, generated) -> None:
    out = podium("select", "--tracking-uri", store_uri)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("★") == 2 and "median latency" in out.stdout


def test_exit_3_when_nothing_to_select(store_uri: str) -> None:
    out = podium("select", "--tracking-uri", store_uri, "--json")
    assert out.returncode == 3
    assert json.loads(out.stdout) == {"selections": []}


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


def test_unstable_candidates_are_marked_and_left_out_when_configured(store_uri: str, tmp_path: Path) -> None:
    """Trial 0's runs never settled (mean 20x its p50): ranked on p50 it would win, so it is marked; with
    benchmark.exclude_unstable it is out."""
    generate_store(store_uri, StoreSpec(studies=1, trials_per_study=3, benchmarks_per_trial=3, unstable_trials=(0,)))
    on_p50 = tmp_path / "p50.yaml"
    on_p50.write_text("benchmark:\n  latency_metric: latency_batch_1_p50_ms\n")
    out = podium("select", "--tracking-uri", store_uri, "--json", "--config", str(on_p50))
    assert out.returncode == 0, out.stderr
    (sel,) = json.loads(out.stdout)["selections"]
    marked = [c for c in sel["candidates"] if c["unstable"]]
    assert len(sel["candidates"]) == 3 and len(marked) == 1
    excluding = tmp_path / "stable-only.yaml"
    excluding.write_text(on_p50.read_text() + "  exclude_unstable: true\n")
    out = podium("select", "--tracking-uri", store_uri, "--json", "--config", str(excluding))
    (sel,) = json.loads(out.stdout)["selections"]
    assert len(sel["candidates"]) == 2 and not any(c["unstable"] for c in sel["candidates"])
    assert marked[0]["trial_key_hash"] not in {c["trial_key_hash"] for c in sel["candidates"]}
    table = podium("select", "--tracking-uri", store_uri, "--config", str(on_p50))
    assert table.returncode == 0 and table.stdout.count("⚠") == 2, table.stdout  # the row and the note
    assert "unstable: the representative run's windows never agreed" in " ".join(table.stdout.split())
