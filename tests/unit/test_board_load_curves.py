"""The board's reading of load-level metrics into curves, and its MLflow UI links (pure)."""

from __future__ import annotations

import pytest

from podium.board.load_curves import load_curve, run_link, web_ui
from podium.core.metric_names import load_level_name, load_metric


def test_levels_are_read_back_by_the_names_the_worker_writes_closed_loop_first_each_by_load() -> None:
    metrics = {"latency_batch_1_ms": 3.0, "throughput_at_sla_per_s": 42.0}
    for level, tput, p99 in [(load_level_name(8), 800.0, 20.0), (load_level_name(2), 300.0, 9.0)]:
        metrics |= {load_metric(level, "throughput_per_s"): tput, load_metric(level, "p99_ms"): p99}
    rate = load_level_name(request_rate=12.5)
    metrics |= {load_metric(rate, k): v for k, v in {"throughput_per_s": 12.4, "p99_ms": 4.0, "p50_ms": 2.0}.items()}
    metrics |= {load_metric(rate, "achieved_per_s"): 12.45}
    metrics[load_metric("c16", "p50_ms")] = 30.0  # no throughput or p99: no point of a curve

    curve = load_curve(metrics)
    assert curve is not None and curve["throughput_at_sla_per_s"] == 42.0
    assert [(p["level"], p["mode"], p["load"]) for p in curve["levels"]] == [
        ("c2", "concurrency", 2.0),
        ("c8", "concurrency", 8.0),
        ("r12p5", "request_rate", 12.5),
    ]
    assert curve["levels"][2] == {
        "level": "r12p5",
        "mode": "request_rate",
        "load": 12.5,
        "throughput_per_s": 12.4,
        "p50_ms": 2.0,
        "p99_ms": 4.0,
        "achieved_per_s": 12.45,
    }
    assert curve["levels"][0]["p50_ms"] is None


def test_a_run_without_load_levels_has_no_curve() -> None:
    assert load_curve({"latency_batch_1_ms": 3.0, "throughput_batch_1_per_s": 300.0}) is None


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("https://user:pw@mlflow.example/tracking/?x=1#y", "https://mlflow.example/tracking"),
        ('http://h/a b"<c>', "http://h/a%20b%22%3Cc%3E"),
        ("sqlite:///tmp/mlflow.db", None),
        ("file:///tmp/mlruns", None),
        ("javascript:alert(1)", None),
        (None, None),
    ],
)
def test_only_an_http_address_is_an_mlflow_ui_and_it_goes_out_encoded_without_credentials(given, base) -> None:
    assert web_ui(given) == base


def test_a_run_link_is_the_uis_run_page() -> None:
    assert run_link("http://mlflow:5000", "3", "abc") == "http://mlflow:5000/#/experiments/3/runs/abc"


def test_a_scope_gets_the_curves_of_its_candidates_runs_its_budget_and_links() -> None:
    from podium.board.selections import RunSeen
    from podium.board.views import study_document

    def candidate(trial: str) -> dict:
        return {
            "trial_key_hash": trial,
            "benchmark_key": "k" + trial,
            "benchmark_run_id": "b" + trial,
            "trial_run_id": "t" + trial,
            "backbone": "net-" + trial,
        }

    curve = load_curve({"load_c1_throughput_per_s": 100.0, "load_c1_p99_ms": 8.0})
    selection = {"benchmark_config_hash": "cfg", "candidates": [candidate("1")], "excluded": [candidate("2")]}
    runs = {"b1": RunSeen("5"), "t1": RunSeen("4"), "b2": RunSeen("5", curve)}
    doc = study_document("s", 0, [], [], [selection], None, {}, runs, {"cfg": 20.0, "other": 9.0}, "http://ui")
    (scope,) = doc["scopes"]
    assert scope["load"] == {
        "sla_p99_ms": 20.0,
        "curves": [
            {"trial_key_hash": "2", "benchmark_key": "k2", "benchmark_run_id": "b2", "backbone": "net-2"} | curve
        ],
    }
    assert scope["links"] == {
        "b1": "http://ui/#/experiments/5/runs/b1",
        "t1": "http://ui/#/experiments/4/runs/t1",
        "b2": "http://ui/#/experiments/5/runs/b2",
    }
    assert study_document("s", 0, [], [], [selection], None, {}, runs)["scopes"][0]["links"] == {}
