"""``podium watch``'s table: one row per (study, config), the best's doubts shown."""

from __future__ import annotations

from rich.console import Console

from podium.cli.watch_cmd import doubt, render
from podium.core.messages import BestModelUpdate, CandidateView

S, C = "s" * 64, "c" * 64


def update(unstable: bool, unstable_candidates: int, best: bool = True) -> BestModelUpdate:
    view = CandidateView(
        trial_key_hash="t" * 64,
        benchmark_key="k" * 64,
        f1_score=0.9,
        latency_ms=3.25,
        benchmark_runs_count=3,
        benchmark_run_id="run",
        trial_run_id="trial",
        artifact_run_id="artifact",
        backbone="bert-tiny",
        unstable=unstable,
    )
    return BestModelUpdate(
        study_key_hash=S,
        benchmark_config_hash=C,
        seq=4,
        reason="new_best",
        best=view if best else None,
        candidates=5,
        unstable_candidates=unstable_candidates,
        policy="weighted",
        aggregation="median",
        published_at=0.0,
    )


def test_doubt_names_an_unstable_best_and_counts_the_others() -> None:
    assert doubt(update(False, 0)) == "-"
    assert doubt(update(True, 1)) == "unstable · 1/5 unstable"
    assert doubt(update(False, 2)) == "2/5 unstable"
    assert doubt(update(False, 0, best=False)) == "-"


def test_the_table_shows_the_doubt() -> None:
    console = Console(width=200, record=True)
    console.print(render({(S, C): update(True, 1)}))
    text = console.export_text()
    assert "unstable · 1/5 unstable" in text and "bert-tiny" in text and "3.250" in text
