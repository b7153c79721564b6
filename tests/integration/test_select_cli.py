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
