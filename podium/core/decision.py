"""Whether a scope's published best must change, why, and the update that says so: a pure function of what
was published last and what the selection says now (the aggregator's I/O shell only writes the update, giving
it the study's next sequence number and the time it was written).

What subscribers are shown of a scope is its :class:`View`: who is best, with which figures, among how
many candidates, and which challenger is within the noise of it. Any change of it is published, so the
latest-value key never keeps a stale count. Whether a challenger replaces the best is decided by the selection
state's replay of the evidence (:mod:`podium.core.state`); this only says how a change reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from podium.core.messages import BestModelUpdate, CandidateView
from podium.core.selection import WIRE_NAMES, Candidate, Selection

Reason = Literal["first", "new_best", "figures_changed", "within_noise", "candidates_changed", "removed", "take_over"]


@dataclass(frozen=True)
class View:
    """What a published update says of a scope (None stands for "no best")."""

    best: tuple[str, str]  # (trial_key_hash, benchmark_key)
    #: Every other published field of the best (objective, latency, p99, runs aggregated, the run standing for
    #: them, doubt...), in field order: a window that slides changes what subscribers read, so it is published.
    figures: tuple[object, ...]
    candidates: int
    unstable_candidates: int = 0
    #: The top-ranked candidate while its advantage over ``best`` is within the noise.
    challenger: tuple[str, str] | None = None
    #: Candidates shown but not competing (in doubt, over the latency limit).
    excluded: int = 0


@dataclass(frozen=True)
class Channel:
    """What every update of a scope says besides its selection: the scope, how it was selected, its name."""

    study_key_hash: str
    config_hash: str | None
    policy: str
    aggregation: str
    statistic: str = ""
    #: The scope's readable name (None: not known).
    label: str | None = None
    #: The selection config the update is decided under (None: not said).
    selection_config_hash: str | None = None


@dataclass(frozen=True)
class Decision:
    reason: Reason
    view: View | None
    #: What is published: ``seq`` and ``published_at`` are 0 until the writer gives them.
    update: BestModelUpdate


#: The candidate's field behind each field of the view.
FROM_WIRE = {wire: own for own, wire in WIRE_NAMES.items()}


def candidate_view(c: Candidate) -> CandidateView:
    return CandidateView(**{k: getattr(c, FROM_WIRE.get(k, k)) for k in CandidateView.model_fields})


def _view(
    best: CandidateView | Candidate | None,
    candidates: int,
    unstable: int,
    challenger: CandidateView | Candidate | None = None,
    excluded: int = 0,
) -> View | None:
    if best is None:
        return None
    shown = best if isinstance(best, CandidateView) else candidate_view(best)
    return View(
        (best.trial_key_hash, best.benchmark_key),
        tuple(v for k, v in shown.model_dump().items() if k not in ("trial_key_hash", "benchmark_key")),
        candidates,
        unstable,
        (challenger.trial_key_hash, challenger.benchmark_key) if challenger is not None else None,
        excluded,
    )


def view_of_selection(selection: Selection | None) -> View | None:
    if selection is None:
        return None
    doubtful = sum(c.unstable for c in (*selection.candidates, *selection.excluded))
    return _view(selection.best, len(selection.candidates), doubtful, selection.challenger, len(selection.excluded))


def view_of_update(update: BestModelUpdate | None) -> View | None:
    """The view a stored update gave its subscribers (None for no update, or for a ``removed`` one)."""
    if update is None:
        return None
    return _view(update.best, update.candidates, update.unstable_candidates, update.challenger, update.excluded)


def update_of(reason: Reason, selection: Selection | None, channel: Channel) -> BestModelUpdate:
    """The update saying ``selection`` (None: the scope has no best any more) on ``channel``, unnumbered."""
    return BestModelUpdate(
        study_key_hash=channel.study_key_hash,
        benchmark_config_hash=channel.config_hash,
        seq=0,
        reason=reason,
        best=candidate_view(selection.best) if selection else None,
        candidates=len(selection.candidates) if selection else 0,
        unstable_candidates=sum(c.unstable for c in (*selection.candidates, *selection.excluded)) if selection else 0,
        policy=channel.policy,
        aggregation=channel.aggregation,
        statistic=channel.statistic,
        challenger=candidate_view(selection.challenger) if selection and selection.challenger else None,
        excluded=len(selection.excluded) if selection else 0,
        note=selection.note if selection else "",
        published_at=0.0,
        label=channel.label,
        selection_config_hash=channel.selection_config_hash,
    )


def take_over(selection: Selection | None, channel: Channel) -> Decision:
    """The update with which an aggregator started with ``--take-over`` claims a study's channel."""
    return Decision("take_over", view_of_selection(selection), update_of("take_over", selection, channel))


def decide(published: View | None, selection: Selection | None, channel: Channel) -> Decision | None:
    """``None`` when subscribers already see this selection; else the update to publish, with its reason."""
    new = view_of_selection(selection)
    if new == published:
        return None
    if published is None:
        reason: Reason = "first"
    elif new is None:
        reason = "removed"
    elif new.best != published.best:
        reason = "new_best"
    elif new.figures != published.figures:
        reason = "figures_changed"
    elif new.challenger is not None and new.challenger != published.challenger:
        reason = "within_noise"
    else:
        reason = "candidates_changed"
    return Decision(reason, new, update_of(reason, selection, channel))
