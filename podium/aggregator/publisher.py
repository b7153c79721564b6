"""Publish a BestModelUpdate atomically: leader check, sequence check, latest-value key, durable history,
live channel; and acknowledge applied entries, under the same leader check.

Both scripts first check that the leader key still holds this aggregator's token: an aggregator frozen past
its lease (a GC pause, SIGSTOP, a partition) that resumes with a batch already delivered to it can neither
publish its stale view nor acknowledge entries the new leader is responsible for.

What an update says is decided in the core (:func:`podium.core.decision.decide`); this only numbers it, stamps
the time and writes it."""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from podium.aggregator.leadership import Leader
from podium.coordination import keys
from podium.core.channel import restored_counter
from podium.core.messages import BestModelUpdate
from podium.errors import ChannelRefused, LeadershipLost

#: History kept in ``podium:best-updates`` (approximate trim).
HISTORY_MAXLEN = 100_000

# KEYS: seq, latest, history, leader, channel's selection config.
# ARGV: seq, payload, channel, maxlen, leader token ('' = no leader check), selection config hash ('' = none),
# '1' to take the channel over.
# Returns -1 (published), -2 (not the leader), the counter (a higher seq is needed), or the channel's config
# hash as a string (another selection config owns the channel).
_PUBLISH = """
if ARGV[5] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[5] then return -2 end
if ARGV[6] ~= '' and ARGV[7] ~= '1' then
  local owner = redis.call('GET', KEYS[5])
  if owner and owner ~= ARGV[6] then return owner end
end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= current then return current end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'data', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
if ARGV[6] ~= '' then redis.call('SET', KEYS[5], ARGV[6]) end
return -1
"""


# KEYS: leader, stream. ARGV: leader token, group, entry ids...
_ACK = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return -2 end
return redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, 3))
"""


class Publisher:
    def __init__(self, client: redis.Redis, leader: Leader):
        self.client = client
        #: Whose token the leader key must hold for a publish or an acknowledgement to go through.
        self.leader = leader
        self._script = client.register_script(_PUBLISH)
        self._ack = client.register_script(_ACK)
        self._seq: dict[str, int] = {}  # last sequence used or seen per study (survives a Redis flush)

    def channel_configs(self, studies: Sequence[str]) -> dict[str, str | None]:
        """Each study's channel selection config hash (None: not known in Redis), one round trip."""
        if not studies:
            return {}
        return dict(zip(studies, self.client.mget([keys.selection_config(s) for s in studies]), strict=True))

    def known_seqs(self) -> dict[str, int]:
        """The last sequence number this publisher used or saw, per study."""
        return dict(self._seq)

    def restore_sequences(self, studies: Sequence[str], known: dict[str, int]) -> dict[str, int]:
        """Put back the sequence counters Redis lost (FLUSHALL, a fresh replica) of ``studies`` at the highest
        number known (``known``, and what this publisher used), so the sequence goes on above every earlier
        number. Returns the studies restored, with the number."""
        if not studies:
            return {}
        counters = self.client.mget([keys.sequence(s) for s in studies])
        todo = {}
        for study, counter in zip(studies, counters, strict=True):
            best = max(known.get(study, 0), self._seq.get(study, 0))
            value = restored_counter(None if counter is None else int(counter), best)
            if value is not None:
                todo[study] = value
        if not todo:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for study, value in todo.items():
            pipe.set(keys.sequence(study), value, nx=True)
        return {study: value for (study, value), done in zip(todo.items(), pipe.execute(), strict=True) if done}

    def last_published(self, study: str, config_hash: str | None) -> BestModelUpdate | None:
        raw = self.client.get(keys.best_latest(study, config_hash))
        return BestModelUpdate.model_validate_json(raw) if raw else None

    def publish(
        self, decided: BestModelUpdate, then_ack: Sequence[str] = (), take_over: bool = False
    ) -> BestModelUpdate:
        """Publish a decided update as the next of its study (numbered, stamped with the time); with
        ``then_ack``, acknowledge those entries in the same round trip, after it (a step of one event then costs
        Redis two round trips: the read, and this). Returns the update as published.

        The update's selection config owns the study's channel once published; raises :class:`ChannelRefused`
        (the entries in ``then_ack`` acknowledged all the same) when another one owns it, unless ``take_over``."""
        study, config_hash = decided.study_key_hash, decided.benchmark_config_hash
        ack = list(then_ack)
        while True:
            # Redis's counter is read once per study; after that the script says when another took a number
            known = self._seq.get(study)
            seq = (known if known is not None else int(self.client.get(keys.sequence(study)) or 0)) + 1
            update = decided.model_copy(update={"seq": seq, "published_at": time.time()})
            publish_keys = [
                keys.sequence(study),
                keys.best_latest(study, config_hash),
                keys.BEST_UPDATES_STREAM,
                keys.AGGREGATOR_LEADER,
                keys.selection_config(study),
            ]
            publish_args = [
                seq,
                update.encode(),
                keys.best_channel(study),
                HISTORY_MAXLEN,
                self.leader.token,
                decided.selection_config_hash or "",
                "1" if take_over else "",
            ]
            if ack:
                pipe = self.client.pipeline(transaction=False)
                self._script(keys=publish_keys, args=publish_args, client=pipe)
                self._ack_script(ack, pipe)
                result, acked = pipe.execute()
                self._check_ack(acked, ack)
                ack = []  # done, whatever the publish says
            else:
                result = self._script(keys=publish_keys, args=publish_args)
            if isinstance(result, bytes | str):
                raise ChannelRefused(study, result.decode() if isinstance(result, bytes) else result)
            if int(result) == -2:
                raise LeadershipLost(f"publish of seq {seq} for study {study[:12]} refused: no longer the leader")
            if int(result) == -1:
                self._seq[study] = seq
                return update
            self._seq[study] = int(result)  # someone else advanced the sequence: take the next one

    def ack(self, entry_ids: Sequence[str]) -> int:
        """XACK applied entries of ``podium:benchmarks``, only while still the leader."""
        if not entry_ids:
            return 0
        return self._check_ack(self._ack_script(entry_ids), entry_ids)

    def _ack_script(self, entry_ids: Sequence[str], client: redis.client.Pipeline | None = None) -> object:
        return self._ack(
            keys=[keys.AGGREGATOR_LEADER, keys.BENCHMARKS_STREAM],
            args=[self.leader.token, keys.AGGREGATOR_GROUP, *entry_ids],
            client=client,
        )

    def _check_ack(self, result: object, entry_ids: Sequence[str]) -> int:
        if int(result) == -2:  # type: ignore[call-overload]
            raise LeadershipLost(f"acknowledging {len(entry_ids)} entries refused: no longer the leader")
        return int(result)  # type: ignore[call-overload]
