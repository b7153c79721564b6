"""Best-model policies over the candidates of one scope ``(study_key_hash, benchmark_config_hash)``.

``constraint`` (default): the best objective among candidates whose p99 at the ranked batch size meets
``selection.max_latency_ms``; the objective is read in steps of ``objective.tolerance`` and candidates on the
same step are ranked by latency. ``weighted``: ``f1_weight x objective / objective_scale - latency_weight x
latency / latency_scale_ms``, fixed scales. Both order candidates by a key of each candidate alone, so adding a
candidate never changes the order of two others. ``throughput_at_sla``: as ``constraint``, but candidates on one
objective step are ranked by their load benchmark's throughput at its p99 budget, highest first (the figure, held
in ``latency_ms``, is then better higher); a candidate whose runs have no such figure, or whose figure is 0 (no
load level met the budget), is shown but does not compete. ``tolerance``: highest objective; among candidates within
``objective.tolerance`` of the top, the lowest latency (the band moves with the top, so a newcomer can reorder
two others). All drop candidates over ``max_latency_ms`` and, unless ``selection.include_unstable``, those whose
figure is in doubt; ties break by ``trial_key_hash`` (then ``benchmark_key``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from podium.core.config import SelectionConfig

#: Candidate fields published under another name (the channel, ``podium select --json``, the board's API):
#: ``objective`` is the configured objective metric whatever its name, kept as ``f1_score`` on the wire for the
#: subscribers that read it.
WIRE_NAMES = {"objective": "f1_score"}


@dataclass(frozen=True)
class Candidate:
    trial_key_hash: str
    benchmark_key: str
    objective: float  # the configured objective metric, whatever its name
    latency_ms: float  # the ranked per-run figure, aggregated across the group's runs
    benchmark_runs_count: int  # runs aggregated (the window)
    benchmark_run_id: str  # the representative run of the group
    trial_run_id: str
    artifact_run_id: str
    backbone: str | None
    composite_score: float | None = None
    #: The figure is in doubt (the runs it stands on were unstable or contended): see ``doubt``.
    unstable: bool = False
    #: Why the figure is in doubt (``unstable``, ``contended (...)``); None when its runs are clean.
    doubt: str | None = None
    #: The p99 at the ranked batch size, aggregated like ``latency_ms`` (None: its runs do not carry one).
    p99_ms: float | None = None
    #: What ``latency_ms`` is, e.g. ``"p50, median of 3 runs"``.
    latency_figure: str = ""
    #: Why it does not compete (in doubt, over the latency limit); None when it does.
    excluded: str | None = None
    #: ``throughput_at_sla`` policy: the ranked figure (also ``latency_ms``) under its own name; None when the
    #: candidate's runs hold no load benchmark with a p99 budget (or under another policy).
    throughput_at_sla_per_s: float | None = None


@dataclass(frozen=True)
class Selection:
    study_key_hash: str
    benchmark_config_hash: str | None
    best: Candidate  # the published best: the top one, or the incumbent while the top is within noise of it
    candidates: tuple[Candidate, ...]  # competing, ranked by the policy, top first
    #: Shown, not competing, each with its ``excluded`` reason.
    excluded: tuple[Candidate, ...] = ()
    #: The top-ranked candidate when it is not ``best``: its advantage is within the noise.
    challenger: Candidate | None = None

    @property
    def note(self) -> str:
        if self.challenger is None:
            return ""
        return f"challenger {self.challenger.trial_key_hash[:12]} within noise"


def exclusion(c: Candidate, config: SelectionConfig) -> str | None:
    """Why ``c`` may not compete, or None."""
    sel = config.selection
    if sel.policy == "throughput_at_sla":
        if c.throughput_at_sla_per_s is None:
            return "no load benchmark with a p99 budget (benchmarking.load levels and load.sla_p99_ms)"
        if c.throughput_at_sla_per_s <= 0:
            return "no load level met the p99 budget: throughput_at_sla_per_s 0"
    if c.doubt and not sel.include_unstable:
        return f"{c.doubt}: in doubt (selection.include_unstable lets it compete)"
    limit = sel.max_latency_ms
    if limit is None:
        return None
    if sel.policy in ("constraint", "throughput_at_sla"):
        if c.p99_ms is None:
            return f"no p99 figure to hold to max_latency_ms {limit:g}"
        if c.p99_ms > limit:
            return f"p99 {c.p99_ms:.3f} ms over max_latency_ms {limit:g}"
        return None
    if c.latency_ms > limit:
        return f"{c.latency_ms:.3f} ms over max_latency_ms {limit:g}"
    return None


def split(candidates: Sequence[Candidate], config: SelectionConfig) -> tuple[list[Candidate], list[Candidate]]:
    """(competing, ranked best first; excluded, each with its reason)."""
    competing, out = [], []
    for c in candidates:
        reason = exclusion(c, config)
        if reason is None:
            competing.append(c)
        else:
            out.append(replace(c, excluded=reason))
    return rank_eligible(competing, config), out


def rank(candidates: Sequence[Candidate], config: SelectionConfig) -> list[Candidate]:
    """The competing candidates of one scope, best first (scored under ``weighted``)."""
    return split(candidates, config)[0]


def rank_eligible(candidates: Sequence[Candidate], config: SelectionConfig) -> list[Candidate]:
    if not candidates:
        return []
    if config.selection.policy == "tolerance":
        return _rank_tolerance(list(candidates), config)
    scored = [scored_candidate(c, config) for c in candidates]
    return sorted(scored, key=lambda c: sort_key(c, config))


def top_of(competing: Sequence[Candidate], config: SelectionConfig) -> Candidate | None:
    """The first of ``rank_eligible(competing)`` without sorting them all."""
    if not competing:
        return None
    if config.selection.policy != "tolerance":
        return min(competing, key=lambda c: sort_key(c, config))
    tol, maximize = config.objective.tolerance, config.objective.direction == "maximize"
    best = max(c.objective for c in competing) if maximize else min(c.objective for c in competing)
    band = [c for c in competing if (c.objective >= best - tol if maximize else c.objective <= best + tol)]
    sign = -1.0 if maximize else 1.0
    return min(band, key=lambda c: (c.latency_ms, sign * c.objective, c.trial_key_hash, c.benchmark_key))


def scored_candidate(c: Candidate, config: SelectionConfig) -> Candidate:
    if config.selection.policy != "weighted":
        return c
    return replace(c, composite_score=weighted_score(c.objective, c.latency_ms, config))


def weighted_score(objective: float, latency_ms: float, config: SelectionConfig) -> float:
    s = config.scoring
    w_obj, w_lat = s.f1_weight, s.latency_weight
    if s.normalize_weights:
        total = w_obj + w_lat
        w_obj, w_lat = w_obj / total, w_lat / total
    sign = 1.0 if config.objective.direction == "maximize" else -1.0
    return w_obj * sign * objective / s.objective_scale - w_lat * latency_ms / s.latency_scale_ms


def objective_step(objective: float, config: SelectionConfig) -> float:
    """The objective as ``constraint`` reads it: in steps of ``objective.tolerance``, better first (lower)."""
    tol = config.objective.tolerance
    sign = -1.0 if config.objective.direction == "maximize" else 1.0
    if tol <= 0:
        return sign * objective
    # a small epsilon so 0.29 / 0.01 counts as step 29, not 28.999...
    return sign * math.floor(objective / tol + 1e-9)


def higher_is_better(config: SelectionConfig) -> bool:
    """The ranked figure is a throughput (``throughput_at_sla``), not a latency."""
    return config.selection.policy == "throughput_at_sla"


RankKey = tuple[float, float, str, str]


def sort_key(c: Candidate, config: SelectionConfig) -> RankKey:
    """``constraint``, ``weighted`` and ``throughput_at_sla``: a key of the candidate alone (lower ranks first)."""
    return rank_key(c.objective, c.latency_ms, c.trial_key_hash, c.benchmark_key, config)


def rank_key(
    objective: float, figure: float, trial_key_hash: str, benchmark_key: str, config: SelectionConfig
) -> RankKey:
    """:func:`sort_key` of a candidate with these parts (``figure``: its aggregated latency, or throughput)."""
    if config.selection.policy == "weighted":
        return (-weighted_score(objective, figure, config), 0.0, trial_key_hash, benchmark_key)
    if config.selection.policy == "throughput_at_sla":
        return (objective_step(objective, config), -figure, trial_key_hash, benchmark_key)
    return (objective_step(objective, config), figure, trial_key_hash, benchmark_key)


def prefers(a: Candidate, b: Candidate, competing: Sequence[Candidate], config: SelectionConfig) -> bool:
    """``a`` ranks before ``b`` (for ``tolerance``, among ``competing``, where ``a`` stands in for its namesake)."""
    if config.selection.policy != "tolerance":
        return sort_key(a, config) < sort_key(b, config)
    field = [a if _same(c, a) else c for c in competing]
    if not any(_same(c, a) for c in field):
        field.append(a)
    order = [(c.trial_key_hash, c.benchmark_key) for c in _rank_tolerance(field, config)]
    return order.index((a.trial_key_hash, a.benchmark_key)) < order.index((b.trial_key_hash, b.benchmark_key))


def _same(x: Candidate, y: Candidate) -> bool:
    return (x.trial_key_hash, x.benchmark_key) == (y.trial_key_hash, y.benchmark_key)


def _rank_tolerance(candidates: list[Candidate], config: SelectionConfig) -> list[Candidate]:
    tol = config.objective.tolerance
    if config.objective.direction == "maximize":
        top = max(c.objective for c in candidates)

        def in_band(c: Candidate) -> bool:
            return c.objective >= top - tol

        def obj_order(c: Candidate) -> float:
            return -c.objective
    else:
        top = min(c.objective for c in candidates)

        def in_band(c: Candidate) -> bool:
            return c.objective <= top + tol

        def obj_order(c: Candidate) -> float:
            return c.objective

    def order(c: Candidate) -> tuple[int, float, float, str, str]:
        if in_band(c):
            return (0, c.latency_ms, obj_order(c), c.trial_key_hash, c.benchmark_key)
        return (1, obj_order(c), c.latency_ms, c.trial_key_hash, c.benchmark_key)

    return sorted(candidates, key=order)
