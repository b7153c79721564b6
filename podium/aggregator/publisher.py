"""Publish a BestModelUpdate atomically: sequence check, latest-value key, durable history, live channel."""

from __future__ import annotations

import time

import redis

from podium.core.decision import Reason, candidate_view
from podium.core.messages import BestModelUpdate
from podium.core.selection import Selection
from podium.streams import keys

#: History kept in ``podium:best-updates`` (approximate trim).
HISTORY_MAXLEN = 100_000

# KEYS: seq, latest, history. ARGV: seq, payload, channel, maxlen.
_PUBLISH = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= current then return current end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'data', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return -1
"""


class Publisher:
    def __init__(self, client: redis.Redis):
        self.client = client
        self._script = client.register_script(_PUBLISH)
        self._seq: dict[str, int] = {}  # last sequence used per study (survives a Redis flush)

    def last_published(self, study: str, config_hash: str | None) -> BestModelUpdate | None:
        raw = self.client.get(keys.best_latest(study, config_hash))
        return BestModelUpdate.model_validate_json(raw) if raw else None

    def publish(
        self,
        selection: Selection | None,
        study: str,
        config_hash: str | None,
        reason: Reason,
        policy: str,
        aggregation: str,
    ) -> BestModelUpdate:
        best = candidate_view(selection.best) if selection else None
        while True:
            stored = int(self.client.get(keys.sequence(study)) or 0)
            seq = max(stored, self._seq.get(study, 0)) + 1
            update = BestModelUpdate(
                study_key_hash=study,
                benchmark_config_hash=config_hash,
                seq=seq,
                reason=reason,
                best=best,
                candidates=len(selection.candidates) if selection else 0,
                policy=policy,
                aggregation=aggregation,
                published_at=time.time(),
            )
            result = self._script(
                keys=[keys.sequence(study), keys.best_latest(study, config_hash), keys.BEST_UPDATES_STREAM],
                args=[seq, update.encode(), keys.best_channel(study), HISTORY_MAXLEN],
            )
            if int(result) == -1:
                self._seq[study] = seq
                return update
            self._seq[study] = int(result)  # someone else advanced the sequence: take the next one
