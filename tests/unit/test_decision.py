"""The publish decision, exhaustively: every reason, and silence when nothing subscribers see changed."""

from __future__ import annotations

import itertools

import pytest

from podium.core.decision import Channel, candidate_view, decide, view_of_selection, view_of_update
from podium.core.messages import BestModelUpdate
from podium.core.selection import Candidate, Selection

S = "s" * 64
CH = Channel(S, "c" * 64, "weighted", "median")


def cand(trial: str, f1: float = 0.9, latency: float = 10.0, runs: int = 1, key: str = "k") -> Candidate:
    return Candidate(trial * 64, key * 64, f1, latency, runs, "b", "t", "a", None)


def sel(best: Candidate, *others: Candidate) -> Selection:
    return Selection(S, "c" * 64, best, (best, *others))


A, B = cand("1"), cand("2", f1=0.8)


def test_first_publication() -> None:
    assert decide(None, sel(A), CH).reason == "first"


def test_nothing_changed_is_silent() -> None:
    assert decide(view_of_selection(sel(A, B)), sel(A, B), CH) is None
    assert decide(None, None, CH) is None


def test_new_best() -> None:
    assert decide(view_of_selection(sel(A, B)), sel(B, A), CH).reason == "new_best"


def test_same_trial_other_benchmark_key_is_a_new_best() -> None:
    assert decide(view_of_selection(sel(A)), sel(cand("1", key="9")), CH).reason == "new_best"


@pytest.mark.parametrize("change", [{"f1": 0.95}, {"latency": 11.0}, {"runs": 2}])
def test_figures_changed(change: dict) -> None:
    assert decide(view_of_selection(sel(A)), sel(cand("1", **change)), CH).reason == "figures_changed"


@pytest.mark.parametrize(
    "field", [{"p99_ms": 12.0}, {"benchmark_run_id": "other"}, {"unstable": True, "doubt": "contended"}]
)
def test_any_published_field_of_the_best_that_changes_is_published(field: dict) -> None:
    """A window that slides can move the p99 or the run standing for the figure while the p50 stays: subscribers
    would keep reading the old one (a live aggregator and `podium select` disagreed on the p99 so)."""
    moved = Candidate(**{**A.__dict__, **field})
    decision = decide(view_of_selection(sel(A)), sel(moved), CH)
    assert decision is not None and decision.reason == "figures_changed"


def test_a_candidate_joining_without_changing_the_best_is_published() -> None:
    decision = decide(view_of_selection(sel(A)), sel(A, B), CH)
    assert decision.reason == "candidates_changed" and decision.view.candidates == 2


def test_removed() -> None:
    decision = decide(view_of_selection(sel(A)), None, CH)
    assert decision.reason == "removed" and decision.view is None


def test_the_decision_is_the_whole_update_but_its_number_and_time() -> None:
    """What the shell publishes is the decision's update; only the sequence number and the time are the writer's."""
    channel = Channel(S, "c" * 64, "tolerance", "median", "p50", "tagger · local · batch 1", "h" * 64)
    noisy = Candidate("3" * 64, "k" * 64, 0.95, 10.0, 1, "b", "t", "a", None, unstable=True)
    decision = decide(None, Selection(S, "c" * 64, A, (A, noisy), challenger=noisy), channel)
    update = decision.update
    assert (update.seq, update.published_at, update.reason) == (0, 0.0, "first")
    assert (update.study_key_hash, update.benchmark_config_hash) == (S, "c" * 64)
    assert (update.policy, update.aggregation, update.statistic) == ("tolerance", "median", "p50")
    assert (update.label, update.selection_config_hash) == (channel.label, "h" * 64)
    assert update.note == f"challenger {'3' * 12} within noise"
    assert update.best == candidate_view(A) and update.challenger == candidate_view(noisy)
    assert (update.candidates, update.unstable_candidates, update.excluded) == (2, 1, 0)
    assert view_of_update(update) == decision.view
    gone = decide(decision.view, None, channel).update
    assert (gone.reason, gone.best, gone.candidates, gone.label) == ("removed", None, 0, channel.label)


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
    assert decide(view_of_update(update), selection, CH) is None
    assert view_of_update(None) is None


#: What a subscriber reads of the best, besides who it is (the fields of ``CandidateView`` under the candidate's
#: own names, written out here so that the oracle below does not lean on the code under test).
BEST_FIGURES = (
    "objective",
    "latency_ms",
    "benchmark_runs_count",
    "benchmark_run_id",
    "trial_run_id",
    "artifact_run_id",
    "backbone",
    "composite_score",
    "unstable",
    "doubt",
    "p99_ms",
    "latency_figure",
)


def expected_reason(before: Selection | None, after: Selection | None) -> str | None:
    """The decision from its definition, read off the selections themselves: silent when a subscriber would read
    the same update; else the first of: no best before, no best now, another best (trial or benchmark key), another
    figure of the best, a new challenger within noise, any other count or challenger change."""

    def shown(s: Selection) -> tuple:
        doubtful = sum(c.unstable for c in s.candidates + s.excluded)
        challenger = (s.challenger.trial_key_hash, s.challenger.benchmark_key) if s.challenger else None
        return (len(s.candidates), doubtful, challenger, len(s.excluded))

    if before is None or after is None:
        return None if before is after else "first" if before is None else "removed"
    old, new = before.best, after.best
    if (old.trial_key_hash, old.benchmark_key) != (new.trial_key_hash, new.benchmark_key):
        return "new_best"
    if any(getattr(old, f) != getattr(new, f) for f in BEST_FIGURES):
        return "figures_changed"
    if shown(before) == shown(after):
        return None
    if after.challenger is not None and shown(after)[2] != shown(before)[2]:
        return "within_noise"
    return "candidates_changed"


def _universe() -> list[Selection | None]:
    """Selections varying every part a subscriber reads: the best's identity and figures, the candidates, the
    excluded ones, the doubtful count and the challenger (the same figures under another name included)."""
    bests = [
        A,
        B,
        cand("1", key="9"),
        cand("1", runs=2),
        Candidate(**{**A.__dict__, "p99_ms": 12.0}),
        Candidate(**{**A.__dict__, "unstable": True, "doubt": "contended"}),
        Candidate(**{**A.__dict__, "composite_score": 0.5}),
    ]
    C = cand("3")
    doubtful = Candidate(**{**cand("4").__dict__, "unstable": True, "excluded": "unstable: in doubt"})
    too_slow = Candidate(**{**cand("5").__dict__, "excluded": "over max_latency_ms"})
    universe: list[Selection | None] = [None]
    for best, others, excluded, challenger in itertools.product(
        bests, [(), (C,)], [(), (doubtful,), (too_slow,)], [None, C, B]
    ):
        universe.append(Selection(S, "c" * 64, best, (best, *others), excluded, challenger))
    return universe


def test_every_pair_of_selections_decides_as_defined() -> None:
    """Over all pairs of a universe of selections (every part a subscriber reads varied): the decision's reason
    is the one the definition gives, silent exactly when nothing shown changed, and the update carries the view
    of the new selection."""
    universe = _universe()
    for before, after in itertools.product(universe, repeat=2):
        decision = decide(view_of_selection(before), after, CH)
        expected = expected_reason(before, after)
        assert (decision.reason if decision else None) == expected, (before, after)
        if decision is not None:
            assert decision.view == view_of_selection(after)
