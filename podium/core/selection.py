"""Best-model policies over the candidates of one scope ``(study_key_hash, benchmark_config_hash)``.

``weighted`` (default): objective and latency min-max normalised over the scope's candidates, latency
inverted, combined with ``scoring.f1_weight`` / ``scoring.latency_weight``. ``tolerance``: highest
objective; among candidates within ``accuracy_tolerance`` of the top, the lowest latency. Both drop
candidates over ``max_latency_ms`` (and unstable ones under ``exclude_unstable``) and break ties by
``trial_key_hash`` (then ``benchmark_key``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from podium.core.config import SelectionConfig


@dataclass(frozen=True)
class Candidate:
    trial_key_hash: str
    benchmark_key: str
    f1_score: float  # the configured objective metric, whatever its name
    latency_ms: float  # aggregated over the group's window
    benchmark_runs_count: int  # runs aggregated (the window)
    benchmark_run_id: str  # the representative run of the group
    trial_run_id: str
    artifact_run_id: str
    backbone: str | None
    composite_score: float | None = None
    #: The representative run's windows never agreed: its figure is in doubt (mean and p50 may differ widely).
    unstable: bool = False


@dataclass(frozen=True)
class Selection:
    study_key_hash: str
    benchmark_config_hash: str | None
    best: Candidate
    candidates: tuple[Candidate, ...]  # ranked, best first


def rank(candidates: Sequence[Candidate], config: SelectionConfig) -> list[Candidate]:
    """Candidates of one scope, eligible ones only, best first (scored under ``weighted``). Unstable ones are
    eligible unless ``benchmark.exclude_unstable``."""
    limit, stable_only = config.selection.max_latency_ms, config.benchmark.exclude_unstable
    eligible = [c for c in candidates if (limit is None or c.latency_ms <= limit) and not (stable_only and c.unstable)]
    if not eligible:
        return []
    if config.selection.policy == "weighted":
        scored = _score_weighted(eligible, config)
        return sorted(scored, key=lambda c: (-(c.composite_score or 0.0), c.trial_key_hash, c.benchmark_key))
    return _rank_tolerance(eligible, config)


def _score_weighted(candidates: list[Candidate], config: SelectionConfig) -> list[Candidate]:
    w_obj, w_lat = config.scoring.f1_weight, config.scoring.latency_weight
    if config.scoring.normalize_weights:
        total = w_obj + w_lat
        w_obj, w_lat = w_obj / total, w_lat / total
    maximize = config.objective.direction == "maximize"
    objectives = [c.f1_score for c in candidates]
    latencies = [c.latency_ms for c in candidates]
    out = []
    for c in candidates:
        obj = _unit(c.f1_score, objectives, higher_is_better=maximize)
        lat = _unit(c.latency_ms, latencies, higher_is_better=False)
        out.append(replace(c, composite_score=w_obj * obj + w_lat * lat))
    return out


def _unit(value: float, values: list[float], *, higher_is_better: bool) -> float:
    """Min-max normalise to [0, 1], 1 being best; all-equal values all score 1."""
    lo, hi = min(values), max(values)
    if hi == lo:
        return 1.0
    norm = (value - lo) / (hi - lo)
    return norm if higher_is_better else 1.0 - norm


def _rank_tolerance(candidates: list[Candidate], config: SelectionConfig) -> list[Candidate]:
    tol = config.selection.accuracy_tolerance
    if config.objective.direction == "maximize":
        top = max(c.f1_score for c in candidates)

        def in_band(c: Candidate) -> bool:
            return c.f1_score >= top - tol

        def obj_order(c: Candidate) -> float:
            return -c.f1_score
    else:
        top = min(c.f1_score for c in candidates)

        def in_band(c: Candidate) -> bool:
            return c.f1_score <= top + tol

        def obj_order(c: Candidate) -> float:
            return c.f1_score

    def order(c: Candidate) -> tuple[int, float, float, str, str]:
        if in_band(c):
            return (0, c.latency_ms, obj_order(c), c.trial_key_hash, c.benchmark_key)
        return (1, obj_order(c), c.latency_ms, c.trial_key_hash, c.benchmark_key)

    return sorted(candidates, key=order)
