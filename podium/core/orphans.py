"""Which RUNNING benchmark runs are orphans, and how to end them (pure; the sweeper does the I/O).

MLflow leaves a killed writer's run RUNNING. A run carries the fencing token it was measured under:
- its commit went through (the done marker names it): it only missed being marked FINISHED;
- a newer fence was taken for its key, or nobody holds the key's lock any more: its worker is gone;
- otherwise its worker may still be measuring: leave it alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RunningRun:
    run_id: str
    benchmark_key: str
    fencing_token: int | None


@dataclass(frozen=True)
class Verdict:
    action: Literal["finish", "kill", "leave"]
    reason: str


def judge(run: RunningRun, current_fence: int | None, lock_held: bool, done_run_id: str | None) -> Verdict:
    if done_run_id == run.run_id:
        return Verdict("finish", "committed under its fence; its worker stopped before marking it FINISHED")
    if run.fencing_token is None:
        if lock_held:
            return Verdict("leave", "no fencing token, and the key's lock is held: its worker may still be measuring")
        return Verdict("kill", "orphaned: no fencing token and no lock held")
    if current_fence is not None and current_fence > run.fencing_token:
        return Verdict(
            "kill",
            f"orphaned: fence {run.fencing_token} superseded by {current_fence} (its worker stopped or lost the lock)",
        )
    if not lock_held:
        return Verdict("kill", f"orphaned: the lock of fence {run.fencing_token} expired with no commit")
    return Verdict("leave", "its worker still holds the lock")
