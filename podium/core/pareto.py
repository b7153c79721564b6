"""The Pareto front of candidates: none other is at least as good on both objective and latency (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from podium.core.selection import Candidate


def pareto_front(
    candidates: Sequence[Candidate], maximize: bool = True, figure_higher: bool = False
) -> list[Candidate]:
    """Candidates not dominated on (objective, ranked figure: a latency, or with ``figure_higher`` a throughput);
    sorted by the figure."""

    def better_or_equal(a: Candidate, b: Candidate) -> bool:
        obj = a.objective >= b.objective if maximize else a.objective <= b.objective
        return obj and (a.latency_ms >= b.latency_ms if figure_higher else a.latency_ms <= b.latency_ms)

    front = [
        c
        for c in candidates
        if not any(
            better_or_equal(o, c) and (o.objective, o.latency_ms) != (c.objective, c.latency_ms) for o in candidates
        )
    ]
    return sorted(front, key=lambda c: (c.latency_ms, c.trial_key_hash))
