from __future__ import annotations

import pytest

from podium.core.orphans import RunningRun, judge

RUN = RunningRun("r1", "k" * 64, 3)


@pytest.mark.parametrize(
    ("fence", "held", "done", "action"),
    [
        (3, True, "r1", "finish"),  # committed, then died before set_terminated
        (3, False, "r1", "finish"),
        (4, True, None, "kill"),  # a newer holder exists
        (4, False, "r9", "kill"),
        (3, False, None, "kill"),  # lock expired, nothing committed
        (3, True, None, "leave"),  # still measuring
        (None, True, None, "leave"),
    ],
)
def test_verdicts(fence, held, done, action) -> None:
    assert judge(RUN, fence, held, done).action == action


def test_run_without_a_fencing_token() -> None:
    bare = RunningRun("r2", "k" * 64, None)
    assert judge(bare, 5, False, None).action == "kill"
    assert judge(bare, 5, True, None).action == "leave"
