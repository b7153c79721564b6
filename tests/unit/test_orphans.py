"""The orphan verdict over its whole input space, checked against the rules stated in podium/core/orphans.py."""

from __future__ import annotations

import itertools

import pytest

from podium.core.orphans import RunningRun, judge

KEY = "k" * 64


def rule(token: int | None, fence: int | None, held: bool, done: str | None) -> str:
    """The module's rules, read as a decision table: committed -> finish; superseded or unlocked -> kill; else
    its worker may still be measuring -> leave."""
    if done == "r1":
        return "finish"
    superseded = token is not None and fence is not None and fence > token
    return "kill" if superseded or not held else "leave"


CASES = list(
    itertools.product([None, 3], [None, 2, 3, 4], [True, False], [None, "r1", "r9"])  # token, fence, held, done
)


@pytest.mark.parametrize(("token", "fence", "held", "done"), CASES)
def test_verdicts(token: int | None, fence: int | None, held: bool, done: str | None) -> None:
    verdict = judge(RunningRun("r1", KEY, token), fence, held, done)
    assert verdict.action == rule(token, fence, held, done)
    # the reason says what the action does: only a run ended as an orphan is called one
    assert verdict.reason.startswith("orphaned") == (verdict.action == "kill"), verdict
    assert ("committed" in verdict.reason) == (verdict.action == "finish"), verdict


def test_a_commit_of_another_run_of_the_key_finishes_nothing_of_this_one() -> None:
    """The done marker names the run that committed; a RUNNING run it does not name was not committed."""
    assert judge(RunningRun("r1", KEY, 3), 3, True, "r9").action == "leave"
    assert judge(RunningRun("r1", KEY, 3), 4, True, "r9").action == "kill"
