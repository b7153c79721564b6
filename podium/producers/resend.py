"""``podium backfill --sent``: re-send the requests of the producers' sent log that the queue lost (see
:mod:`podium.coordination.sent` for what the log covers, :mod:`podium.core.lost` for the rule)."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from celery import Celery

from podium.coordination import keys
from podium.coordination.sent import drop_sent, existing, read_sent, waiting_task_ids
from podium.core.lost import Sent, lost_requests
from podium.core.messages import BenchmarkRequest, decode
from podium.core.safety import require_safe
from podium.errors import MessageError
from podium.producers.enqueue import Enqueued, send_request

#: Only requests whose answer would still be kept are judged (the task results' expiry).
MAX_AGE_S = 24 * 3600


@dataclass
class Resent:
    noted: int = 0  # entries in the log within MAX_AGE_S
    accounted: int = 0  # answered, done, queued or in flight (or too recent to judge)
    sent: list[Enqueued] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (entry id, why)


def resend_lost(client: redis.Redis, app: Celery, min_age_s: float) -> Resent:
    seconds, micros = client.time()  # the clock the log's entry ids come from
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    entries = read_sent(client, now_ms - MAX_AGE_S * 1000)
    report = Resent(noted=len(entries))
    good: list[Sent] = []
    for entry in entries:
        try:
            for value, what in (
                (entry.task_id, "task id"),
                (entry.benchmark_key, "benchmark_key"),
                (entry.queue, "queue"),
            ):
                require_safe(value, what)
            if not entry.queue.startswith(f"{keys.PREFIX}."):
                raise ValueError(f"queue {entry.queue!r} is not a podium queue")
        except ValueError as exc:
            report.refused.append((entry.entry_id, str(exc)))
            continue
        good.append(entry)
    metas = {keys.TASK_META_PREFIX + e.task_id: e.task_id for e in good}
    dones = {keys.done(e.benchmark_key): e.benchmark_key for e in good}
    lost = lost_requests(
        good,
        answered={metas[k] for k in existing(client, list(metas))},
        done_keys={dones[k] for k in existing(client, list(dones))},
        waiting=waiting_task_ids(client, {e.queue for e in good}),
        now_ms=now_ms,
        min_age_ms=int(min_age_s * 1000),
        max_age_ms=MAX_AGE_S * 1000,
    )
    report.accounted = len(good) - len(lost)
    for entry in lost:
        try:
            request = decode(BenchmarkRequest, entry.request)
        except MessageError as exc:
            report.refused.append((entry.entry_id, str(exc)))
            continue
        report.sent.append(send_request(app, request))
        drop_sent(client, [entry.entry_id])
    return report
