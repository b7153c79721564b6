"""End orphaned RUNNING benchmark runs (see :mod:`podium.core.orphans`), first those whose worker's main process
recorded why they ended (:mod:`podium.workers.holds`): FAILED with that reason."""

from __future__ import annotations

import logging

import redis

from podium.coordination import keys
from podium.coordination.legacy import bump_epoch
from podium.core.filters import all_of, status_is, tag_eq
from podium.core.orphans import RunningRun, Verdict, judge
from podium.tracking.tracker import MlflowTracking
from podium.workers.holds import drop_ending, endings

log = logging.getLogger(__name__)


def sweep(tracking: MlflowTracking, client: redis.Redis, benchmark_key: str | None = None) -> dict[str, Verdict]:
    """Judge every RUNNING benchmark run (of one key, or all); finish or kill the orphans."""
    end_recorded(tracking, client, benchmark_key)
    t = tracking.tags
    clauses = [tag_eq(t.stage.key, t.stage.benchmark), status_is("RUNNING")]
    if benchmark_key is not None:
        clauses.append(tag_eq(t.benchmark.key, benchmark_key))
    out: dict[str, Verdict] = {}
    acted = False
    for run in tracking.search([tracking.benchmark_experiment_id()], all_of(*clauses)):
        key = run.data.tags.get(t.benchmark.key)
        if not key:
            continue
        token = run.data.tags.get(t.benchmark.fencing_token)
        candidate = RunningRun(run.info.run_id, key, int(token) if token and token.isdigit() else None)
        fence = client.get(keys.fence(key))
        verdict = judge(
            candidate, int(fence) if fence else None, bool(client.exists(keys.lock(key))), client.get(keys.done(key))
        )
        out[run.info.run_id] = verdict
        if verdict.action == "finish":
            tracking.finish_run(run.info.run_id)
        elif verdict.action == "kill":
            tracking.fail_run(run.info.run_id, verdict.reason, status="KILLED")
        if verdict.action != "leave":
            acted = True
            log.warning(
                "Swept benchmark run %s of %s: %s (%s).", run.info.run_id, key[:12], verdict.action, verdict.reason
            )
    if acted:  # runs changed status: what workers learned about the store's legacy runs may be stale
        bump_epoch(client, "a sweep")
    return out


def end_recorded(tracking: MlflowTracking, client: redis.Redis, benchmark_key: str | None = None) -> int:
    """End the runs whose task ended outside its own code (hard time limit, lost process, worker stopped), as
    their main process recorded: FAILED with its reason (FINISHED if the commit went through). A record is
    dropped once its key has no RUNNING run of that worker left. Returns how many runs were ended."""
    t = tracking.tags
    ended = 0
    for key, record in endings(client).items():
        if benchmark_key is not None and key != benchmark_key:
            continue
        clauses = [tag_eq(t.stage.key, t.stage.benchmark), status_is("RUNNING"), tag_eq(t.benchmark.key, key)]
        left = False
        for run in tracking.search([tracking.benchmark_experiment_id()], all_of(*clauses)):
            if run.data.tags.get(t.benchmark.worker) != record.get("worker"):
                continue
            token = run.data.tags.get(t.benchmark.fencing_token)
            candidate = RunningRun(run.info.run_id, key, int(token) if token and token.isdigit() else None)
            fence = client.get(keys.fence(key))
            lock_held = bool(client.exists(keys.lock(key)))
            verdict = judge(candidate, int(fence) if fence else None, lock_held, client.get(keys.done(key)))
            if verdict.action == "finish":
                tracking.finish_run(run.info.run_id)
            elif verdict.action == "kill":
                tracking.fail_run(run.info.run_id, str(record.get("reason", "its task ended")), strict=True)
            else:
                left = True
                continue
            ended += 1
            log.warning("Ended benchmark run %s of %s: %s.", run.info.run_id, key[:12], record.get("reason"))
        if not left:
            drop_ending(client, key, record["raw"])
    if ended:
        bump_epoch(client, "ending runs")
    return ended
