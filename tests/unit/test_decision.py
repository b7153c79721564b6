"""The publish decision, exhaustively: every reason, and silence when nothing subscribers see changed."""

from __future__ import annotations

import itertools

import pytest

from podium.core.decision import View, candidate_view, decide, view_of_selection, view_of_update
from podium.core.messages import BestModelUpdate
from podium.core.selection import Candidate, Selection

S = "s" * 64


def cand(trial: str, f1: float = 0.9, latency: float = 10.0, runs: int = 1, key: str = "k") -> Candidate:
    return Candidate(trial * 64, key * 64, f1, latency, runs, "b", "t", "a", None)


def sel(best: Candidate, *others: Candidate) -> Selection:
    return Selection(S, "c" * 64, best, (best, *others))


A, B = cand("1"), cand("2", f1=0.8)


def test_first_publication() -> None:
    assert decide(None, sel(A)).reason == "first"


def test_nothing_changed_is_silent() -> None:
    assert decide(view_of_selection(sel(A, B)), sel(A, B)) is None
    assert decide(None, None) is None


def test_new_best() -> None:
    assert decide(view_of_selection(sel(A, B)), sel(B, A)).reason == "new_best"


def test_same_trial_other_benchmark_key_is_a_new_best() -> None:
    assert decide(view_of_selection(sel(A)), sel(cand("1", key="9"))).reason == "new_best"


@pytest.mark.parametrize("change", [{"f1": 0.95}, {"latency": 11.0}, {"runs": 2}])
def test_figures_changed(change: dict) -> None:
    assert decide(view_of_selection(sel(A)), sel(cand("1", **change))).reason == "figures_changed"


@pytest.mark.parametrize(
    "field", [{"p99_ms": 12.0}, {"benchmark_run_id": "other"}, {"unstable": True, "doubt": "contended"}]
)
def test_any_published_field_of_the_best_that_changes_is_published(field: dict) -> None:
    """A window that slides can move the p99 or the run standing for the figure while the p50 stays: subscribers
    would keep reading the old one (a live aggregator and `podium select` disagreed on the p99 so)."""
    moved = Candidate(**{**A.__dict__, **field})
    decision = decide(view_of_selection(sel(A)), sel(moved))
    assert decision is not None and decision.reason == "figures_changed"


def test_a_candidate_joining_without_changing_the_best_is_published() -> None:
    decision = decide(view_of_selection(sel(A)), sel(A, B))
    assert decision.reason == "candidates_changed" and decision.view.candidates == 2


def test_removed() -> None:
    decision = decide(view_of_selection(sel(A)), None)
    assert decision.reason == "removed" and decision.view is None


def test_a_stored_update_gives_back_the_view_it_was_made_from() -> None:
    selection = sel(A, B)
    update = BestModelUpdate(
        study_key_hash=S,
        benchmark_config_hash="c" * 64,
        seq=1,
        reason="first",
        best=candidate_view(A),
        candidates=2,
        policy="weighted",
        aggregation="median",
        published_at=0.0,
    )
    assert view_of_update(update) == view_of_selection(selection)
    assert decide(view_of_update(update), selection) is None
    assert view_of_update(None) is None


def test_every_pair_of_views_decides_consistently() -> None:
    """Over all pairs of a small universe of selections: silent exactly when the views are equal, and the
    reason names the first thing that differs."""
    universe: list[Selection | None] = [None]
    for best, others, runs in itertools.product([A, B, cand("1", key="9")], [(), (cand("3"),)], [1, 2]):
        universe.append(sel(Candidate(**{**best.__dict__, "benchmark_runs_count": runs}), *others))
    for before, after in itertools.product(universe, repeat=2):
        old, new = view_of_selection(before), view_of_selection(after)
        decision = decide(old, after)
        if old == new:
            assert decision is None
            continue
        assert decision is not None and decision.view == new
        expected = (
            "first"
            if old is None
            else "removed"
            if new is None
            else "new_best"
            if old.best != new.best
            else "figures_changed"
            if old.figures != new.figures
            else "candidates_changed"
        )
        assert decision.reason == expected
        assert isinstance(new, View | None)
