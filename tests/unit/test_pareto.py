from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from podium.core.pareto import pareto_front
from podium.core.selection import Candidate


def cand(t: str, f1: float, lat: float) -> Candidate:
    return Candidate(t, "k" + t, f1, lat, 1, "b", "t", "a", None)


def test_front_of_a_known_set() -> None:
    cs = [cand("a", 0.9, 30), cand("b", 0.85, 10), cand("c", 0.8, 12), cand("d", 0.95, 50), cand("e", 0.7, 5)]
    assert [c.trial_key_hash for c in pareto_front(cs)] == ["e", "b", "a", "d"]
    assert [c.trial_key_hash for c in pareto_front(cs, maximize=False)] == ["e"]


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0.1, 100)), min_size=1, max_size=30))
def test_front_is_non_dominated_and_dominates_the_rest(points) -> None:
    cs = [cand(str(i), f, lat) for i, (f, lat) in enumerate(points)]
    front = pareto_front(cs)
    assert front
    for c in cs:
        if c in front:
            assert not any(
                o.objective >= c.objective
                and o.latency_ms <= c.latency_ms
                and (o.objective, o.latency_ms) != (c.objective, c.latency_ms)
                for o in cs
            )
        else:
            assert any(o.objective >= c.objective and o.latency_ms <= c.latency_ms for o in front)
