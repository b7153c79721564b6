"""The bounded memo: the newest entries kept, the oldest forgotten first."""

from __future__ import annotations

import copy
import pickle

import pytest

from podium.core.bounded import Bounded


def test_the_oldest_entry_is_forgotten_first() -> None:
    memo: Bounded[str, int] = Bounded(3)
    for i in range(5):
        assert memo.remember(f"k{i}", i) == i
    assert list(memo.items()) == [("k2", 2), ("k3", 3), ("k4", 4)]


def test_remembering_a_key_again_makes_it_the_newest_and_forgets_nothing() -> None:
    memo: Bounded[str, int] = Bounded(2)
    memo.remember("a", 1)
    memo.remember("b", 2)
    memo.remember("a", 3)  # full, but "a" is there: nothing is forgotten
    assert list(memo.items()) == [("b", 2), ("a", 3)]
    memo.remember("c", 4)
    assert list(memo) == ["a", "c"]


def test_a_long_run_keeps_exactly_the_limit() -> None:
    memo: Bounded[int, int] = Bounded(1000)
    for i in range(10_000):
        memo.remember(i, i)
    assert len(memo) == 1000 and next(iter(memo)) == 9000 and memo[9999] == 9999


def test_a_memo_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one entry, not 0"):
        Bounded(0)


def test_a_copy_keeps_the_limit_and_the_order() -> None:
    memo: Bounded[str, int] = Bounded(2)
    memo.remember("a", 1)
    memo.remember("b", 2)
    for other in (memo.copy(), copy.copy(memo), copy.deepcopy(memo), pickle.loads(pickle.dumps(memo))):
        assert isinstance(other, Bounded) and other.limit == 2 and list(other.items()) == [("a", 1), ("b", 2)]
        other.remember("c", 3)
        assert list(other) == ["b", "c"]
    assert list(memo) == ["a", "b"]  # the copies are their own
