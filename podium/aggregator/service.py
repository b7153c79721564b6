"""The aggregator: rebuild from MLflow, then fold result events from ``podium:benchmarks`` into the core's
``SelectionState`` and publish every change of a scope's best model.

Only one aggregator applies events at a time (a leader lock); a second one waits as a standby. Publishing
and acknowledging are fenced by the leader's token (one script each): a leader frozen past its lease drops
what it holds and rebuilds before it leads again. Events are acknowledged after they are applied; entries
left pending by a dead consumer are claimed back.

An event is applied only when MLflow holds its run FINISHED with the same key, study, trial and config
(looked up once per batch, remembered per run); what is folded in is MLflow's record of the run (the metrics
the fold reads). Malformed, forged and uncommitted events go to the dead-letter stream with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from podium.aggregator.leadership import Leadership
from podium.aggregator.publisher import Publisher
from podium.coordination import keys
from podium.coordination.dead_letters import dead_letter
from podium.coordination.lock import FencedLock
from podium.coordination.policy import EvictionGuard
from podium.core.aggregation import ScopeKey
from podium.core.bounded import Bounded
from podium.core.channel import channel_rule, refusal, selection_config_hash
from podium.core.clock import Clock
from podium.core.config import SelectionConfig
from podium.core.decision import Channel, Decision, View, decide, take_over, view_of_update
from podium.core.figure import statistic_name
from podium.core.messages import BenchmarkResult, BestModelUpdate, decode
from podium.core.records import BenchmarkRecord
from podium.core.selection import Selection
from podium.core.state import SelectionState, folded_metrics
from podium.core.store import RunReads
from podium.core.verification import DEFAULT_SKEW, SkewBounds, claim_problem, run_problem, trusted_start
from podium.errors import ChannelRefused, LockLost, MessageError, TrackingError
from podium.monitoring import prometheus

log = logging.getLogger(__name__)

#: Entries read per XREADGROUP.
BATCH = 500
#: Pending entries idle this long belong to a dead consumer and are claimed back.
CLAIM_IDLE_MS = 30_000
#: How often pending entries of dead consumers are looked for.
CLAIM_EVERY_S = 5.0
#: A trial unknown to the state is looked up in MLflow at most this often.
TRIAL_REFRESH_S = 5.0
#: A standby waits at most this long for a new history entry before it tries to lead again.
FOLLOW_BLOCK_MS = 250
#: An idle leader's read of new results waits at most this long: also how long a stop (SIGTERM, Ctrl-C) waits for
#: the loop to see it (an idle aggregator then costs Redis four reads a second).
STEP_BLOCK_MS = 250
#: Runs remembered as verified (a replayed event of one of them needs no MLflow look-up).
VERIFIED_MAX = 200_000


@dataclass
class AggregatorStats:
    applied: int = 0
    replays: int = 0
    published: int = 0
    dead_letters: int = 0
    skewed: int = 0
    leads: int = 0
    leads_lost: int = 0
    last_lag_ms: float = 0.0


class Aggregator:
    def __init__(
        self,
        client: redis.Redis,
        tracking: RunReads,
        config: SelectionConfig,
        consumer: str,
        on_update: Callable[[BestModelUpdate], None] | None = None,
        on_new_best: Callable[[Selection], object] | None = None,
        skew: SkewBounds = DEFAULT_SKEW,
        clock: Clock = time.monotonic,
        eviction: EvictionGuard | None = None,
        take_over: bool = False,
        leadership: Leadership | None = None,
    ):
        self.client = client
        self.tracking = tracking
        self.config = config
        self.consumer = consumer
        self.state = SelectionState(config)
        #: One selection config per study channel: this one's hash goes with every update; a study whose channel
        #: another config owns is not published (``refused``: study -> the channel's hash) unless ``take_over``.
        self.config_hash = selection_config_hash(config)
        self.take_over = take_over
        self.refused: dict[str, str] = {}
        #: The leader lock: publishes and acknowledgements go through only under its token.
        self.leadership = leadership or Leadership(client)
        self.publisher = Publisher(client, self.leadership)
        self.published: dict[ScopeKey, View | None] = {}
        self.trial_checked: dict[tuple[str, str], float] = {}
        self.stats = AggregatorStats()
        self.on_update = on_update
        self.on_new_best = on_new_best
        self.skew = skew
        #: Paces the claim of dead consumers' entries and the look-ups of a missing trial.
        self.clock = clock
        #: Re-reads Redis's eviction policy; while it evicts, no entry is read (intake stops)
        self.eviction = eviction
        self.verified: Bounded[str, BenchmarkRecord] = Bounded(VERIFIED_MAX)
        #: Each scope's readable name (None: none found), read once.
        self.labels: dict[ScopeKey, str | None] = {}
        self._last_claim: float | None = None  # the first step claims
        #: The highest sequence number known per study, followed while standing by (``follow``).
        self.known_seq: dict[str, int] = {}
        self._history_cursor: str | None = None

    # ------------------------------------------------------------------ start-up

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(keys.BENCHMARKS_STREAM, keys.AGGREGATOR_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def rebuild(self) -> None:
        """MLflow is the source of truth: fold every FINISHED run in, then publish what changed."""
        self.state = SelectionState(self.config)
        ids = self.tracking.experiment_ids()
        seconds, micros = self.client.time()  # Redis's clock, which workers stamp their runs with
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        trials, benchmarks = self.tracking.load_trials(ids), self.tracking.load_benchmarks(ids, self.skew, now_ms)
        for trial in trials:
            self.state.apply_trial(trial)
        for bench in benchmarks:
            self.state.apply_benchmark(bench)
            if bench.benchmark_key is not None:  # MLflow's own record: an event naming it needs no look-up
                self._remember(bench)
        self.tracking.warm_lookups()
        self.published = {}
        restored = self.publisher.restore_sequences(sorted({b.study_key_hash for b in benchmarks}), self.known_seq)
        if restored:
            log.warning(
                "Redis lost the sequence counter of %d study(ies) MLflow holds (%s): put back at the highest number "
                "this aggregator knew, so their sequences go on (Redis lost its data?).",
                len(restored),
                ", ".join(f"{s[:12]} at {n}" for s, n in list(restored.items())[:5])
                + (", ..." if len(restored) > 5 else ""),
            )
        scopes = self.state.scopes()
        last = {scope: self.publisher.last_published(scope.study_key_hash, scope.config_hash) for scope in scopes}
        taking_over = self._check_channels(scopes, last)
        selections = {scope: self.state.select(scope) for scope in scopes}
        self._read_labels(selections)
        for scope in scopes:
            self.published[scope] = view_of_update(last[scope])
            selection, channel = selections[scope], self._channel(scope)
            claim = scope.study_key_hash in taking_over
            decision = take_over(selection, channel) if claim else decide(self.published[scope], selection, channel)
            if decision is not None:
                self._publish(scope, selection, decision, take_over=claim)
        log.info(
            "Rebuilt from MLflow %s: %d trial run(s), %d benchmark run(s), %d scope(s), %d group(s).",
            self.tracking.uri,
            len(trials),
            len(benchmarks),
            len(self.state.scopes()),
            len(self.state.windows),
        )

    # ------------------------------------------------------------------ consuming

    def step(self, block_ms: int = STEP_BLOCK_MS) -> int:
        """Claim entries of dead consumers, read a batch, apply, acknowledge. Returns entries handled."""
        entries = []
        if self._last_claim is None or self.clock() - self._last_claim > CLAIM_EVERY_S:
            self._last_claim = self.clock()
            claimed = self.client.xautoclaim(
                keys.BENCHMARKS_STREAM,
                keys.AGGREGATOR_GROUP,
                self.consumer,
                min_idle_time=CLAIM_IDLE_MS,
                start_id="0-0",
                count=BATCH,
            )
            entries = [e for e in (claimed[1] if claimed else []) if e[1]]
        if not entries:
            response = self.client.xreadgroup(
                keys.AGGREGATOR_GROUP, self.consumer, {keys.BENCHMARKS_STREAM: ">"}, count=BATCH, block=block_ms
            )
            entries = [e for _, batch in (response or []) for e in batch]
        if not entries:
            return 0
        self.apply_batch(entries, ack=[e for e, _ in entries])
        return len(entries)

    def apply_batch(self, entries: list[tuple[str, dict[str, str]]], ack: Sequence[str] = ()) -> None:
        """Verify a batch against MLflow (one look-up), apply it, then publish each changed scope once (its
        final state after the batch), and acknowledge ``ack`` (with the last publish: one round trip)."""
        decoded: list[tuple[str, BenchmarkResult]] = []
        for entry_id, fields in entries:
            try:
                decoded.append((entry_id, decode(BenchmarkResult, fields.get("data", ""))))
            except MessageError as exc:
                self._dead_letter(fields, f"stream entry {entry_id}: {exc}")
        unknown = [r.run_id for _, r in decoded if r.run_id not in self.verified]
        facts = self.tracking.run_facts(unknown, folded_metrics(self.config)) if unknown else {}
        changed: set[ScopeKey] = set()
        applied_before, replays_before = self.stats.applied, self.stats.replays
        for entry_id, result in decoded:
            record = self.verified.get(result.run_id)
            if record is None:
                found = facts.get(result.run_id)
                problem = run_problem(result.run_id, found)
                if problem is not None or found is None or found.record is None:
                    self._dead_letter({"data": result.encode()}, f"stream entry {entry_id}: {problem}")
                    continue
                record = self._remember(found.record)
            if (problem := claim_problem(result, record)) is not None:
                self._dead_letter({"data": result.encode()}, f"stream entry {entry_id}: {problem}")
                continue
            changed |= self.apply_record(entry_id, result, record)
        if decoded:  # metrics once per batch, not per event
            prometheus.EVENTS.labels("applied").inc(self.stats.applied - applied_before)
            prometheus.EVENTS.labels("replay").inc(self.stats.replays - replays_before)
            self.stats.last_lag_ms = max(0.0, time.time() * 1000 - int(decoded[-1][0].split("-")[0]))
            prometheus.LAG.set(self.stats.last_lag_ms / 1000)
        selections = {
            scope: self.state.select(scope)
            for scope in sorted(changed, key=lambda s: (s.study_key_hash, s.config_hash or ""))
        }
        self._read_labels(selections)
        due = [
            (scope, selection, decision)
            for scope, selection in selections.items()
            if (decision := decide(self.published.get(scope), selection, self._channel(scope))) is not None
        ]
        for i, (scope, selection, decision) in enumerate(due):
            self._publish(scope, selection, decision, then_ack=ack if i == len(due) - 1 else ())
        if not due:
            self.publisher.ack(ack)

    def _check_channels(self, scopes: Sequence[ScopeKey], last: dict[ScopeKey, BestModelUpdate | None]) -> set[str]:
        """Read each study channel's selection config (Redis's key; else the config its latest value names); log
        one line per study another config owns. Returns the studies this aggregator takes over."""
        studies = sorted({scope.study_key_hash for scope in scopes})
        channels = self.publisher.channel_configs(studies)
        for scope, update in last.items():  # the key lost (or written by an older podium): the snapshot says
            if channels.get(scope.study_key_hash) is None and update is not None and update.selection_config_hash:
                channels[scope.study_key_hash] = update.selection_config_hash
        self.refused, taking_over = {}, set()
        for study in studies:
            channel = channels.get(study)
            rule = channel_rule(channel, self.config_hash, self.take_over)
            if rule == "refuse" and channel is not None:
                self.refused[study] = channel
                log.warning(refusal(study, channel, self.config_hash))
            elif rule == "take_over" and channel is not None:
                taking_over.add(study)
                log.warning(
                    "Study %s: taking its channel over (--take-over) from selection config %s to %s.",
                    study[:12],
                    channel[:12],
                    self.config_hash[:12],
                )
        return taking_over

    def _remember(self, record: BenchmarkRecord) -> BenchmarkRecord:
        return self.verified.remember(record.run_id, record)

    def _dead_letter(self, fields: dict[str, str], error: str) -> None:
        self.stats.dead_letters += 1
        dead_letter(self.client, "result", fields, error)
        prometheus.EVENTS.labels("dead_letter").inc()

    def recover_pending(self) -> int:
        """On taking the lead, claim and apply every entry delivered but never acknowledged (by a dead
        leader, whatever its consumer name): only the leader consumes, so none is in flight elsewhere."""
        handled, cursor = 0, "0-0"
        while True:
            cursor, entries, *_ = self.client.xautoclaim(
                keys.BENCHMARKS_STREAM,
                keys.AGGREGATOR_GROUP,
                self.consumer,
                min_idle_time=0,
                start_id=cursor,
                count=BATCH,
            )
            live = [e for e in entries if e[1]]
            self.apply_batch(live, ack=[e for e, _ in entries])
            handled += len(live)
            if cursor in ("0-0", b"0-0"):
                return handled

    def apply_record(self, entry_id: str, result: BenchmarkResult, record: BenchmarkRecord) -> set[ScopeKey]:
        """Fold MLflow's record of a verified event's run in; return the scopes it changed."""
        entry_ms = int(entry_id.split("-")[0])
        record, warning = trusted_start(record, entry_ms, self.skew)
        if warning is not None:
            self.stats.skewed += 1
            prometheus.EVENTS.labels("clock_skew").inc()
            log.warning("Result of worker %s: %s.", result.worker, warning)
        changed = self._know_trial(record.study_key_hash, record.trial_key_hash)
        scope = self.state.apply_benchmark(record)
        if scope is None:
            self.stats.replays += 1
            return changed
        self.stats.applied += 1
        return changed | {scope}

    def _know_trial(self, study: str, trial: str) -> set[ScopeKey]:
        """Look a trial up in MLflow the first time a result names it (rate-limited)."""
        side = self.state.trials.get((study, trial))
        if side is not None and side.trial is not None:
            return set()
        now = self.clock()
        checked = self.trial_checked.get((study, trial))
        if checked is not None and now - checked < TRIAL_REFRESH_S:
            return set()
        self.trial_checked[(study, trial)] = now
        return {scope for record in self.tracking.load_trial(study, trial) for scope in self.state.apply_trial(record)}

    # ------------------------------------------------------------------ publishing

    def maybe_publish(self, scope: ScopeKey) -> BestModelUpdate | None:
        """Publish the scope's selection if it changed what subscribers know."""
        selection = self.state.select(scope)
        self._read_labels({scope: selection})
        decision = decide(self.published.get(scope), selection, self._channel(scope))
        return None if decision is None else self._publish(scope, selection, decision)

    def _channel(self, scope: ScopeKey) -> Channel:
        """What this aggregator's updates of ``scope`` say besides its selection."""
        return Channel(
            scope.study_key_hash,
            scope.config_hash,
            self.config.selection.policy,
            self.config.benchmark.across_runs,
            statistic_name(self.config.benchmark),
            self.labels.get(scope),
            self.config_hash or None,
        )

    def _read_labels(self, selections: dict[ScopeKey, Selection | None]) -> None:
        """Read the readable names of scopes not yet named, in one MLflow look-up; each scope's once (what a
        scope measured never changes). A scope with no selection yet is left for later."""
        todo = {scope: s for scope, s in selections.items() if scope not in self.labels and s is not None}
        if not todo:
            return
        try:
            found = self.tracking.describe_selections(todo.values())
        except TrackingError as exc:  # a name only: never worth holding a publish up
            log.warning("No label for %d scope(s) (%s).", len(todo), exc)
            return
        for scope in todo:
            named = found.get((scope.study_key_hash, scope.config_hash))
            self.labels[scope] = named.label if named else None

    def _publish(
        self,
        scope: ScopeKey,
        selection: Selection | None,
        decision: Decision,
        then_ack: Sequence[str] = (),
        take_over: bool = False,
    ) -> BestModelUpdate | None:
        """Write a decided update; with ``then_ack``, acknowledge those entries in the same round trip. None:
        another selection config owns the study's channel (the entries are acknowledged all the same)."""
        reason = decision.reason
        if scope.study_key_hash in self.refused:
            self.publisher.ack(then_ack)
            return None
        try:
            update = self.publisher.publish(decision.update, then_ack=then_ack, take_over=take_over)
        except ChannelRefused as exc:  # another leader's config took the channel meanwhile
            self.refused[exc.study] = exc.channel_hash
            log.warning(refusal(exc.study, exc.channel_hash, self.config_hash))
            return None
        self.published[scope] = decision.view
        self.stats.published += 1
        prometheus.UPDATES.labels(reason).inc()
        best = update.best
        log.info(
            "Published seq %d of study %s config %s: %s; best %s; %d candidate(s).",
            update.seq,
            scope.study_key_hash[:12],
            (scope.config_hash or "legacy")[:12],
            reason,
            f"trial {best.trial_key_hash[:12]} objective {best.f1_score:.4f} latency {best.latency_ms:.3f} ms "
            f"({best.latency_figure}){'; ' + update.note if update.note else ''}"
            if best
            else "none",
            update.candidates,
        )
        if self.on_update:
            self.on_update(update)
        if self.on_new_best and selection is not None and reason in ("first", "new_best", "take_over"):
            self.on_new_best(selection)
        return update

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, leader_ttl_ms: int = 15_000) -> None:
        """Lead (one aggregator at a time), rebuild, consume until ``stop``; reconnect on Redis errors."""
        while not stop.is_set():
            leader = self.leadership.candidate(leader_ttl_ms)
            try:
                if leader.acquire() is None:  # stand by: follow the sequences until the next try
                    self.follow(block_ms=min(leader_ttl_ms // 3, FOLLOW_BLOCK_MS))
                    continue
                self._lead(leader)
                while not stop.is_set():
                    leader.check()
                    if self.eviction is not None and not self.eviction.allows():
                        stop.wait(self.eviction.every_s)  # Redis evicts: read nothing until it stops
                        continue
                    self.step()
            except LockLost as exc:  # the watchdog's, or LeadershipLost from a fenced publish or ack
                self._drop(exc)
            except redis.RedisError as exc:
                log.warning("Redis error in the aggregator (%s); reconnecting and rebuilding.", exc)
                stop.wait(1.0)
            except TrackingError as exc:
                log.warning("MLflow error in the aggregator (%s); unacknowledged events wait, retrying.", exc)
                stop.wait(1.0)
            finally:
                self.leadership.step_down()
                leader.release()

    def follow(self, block_ms: int | None = None) -> None:
        """While standing by: remember the highest sequence number of each study (Redis's counters once, then the
        history stream's new entries as they come, waiting up to ``block_ms`` for one), so that leading after
        Redis lost its data continues above them."""
        if self._history_cursor is None:
            tip = self.client.xrevrange(keys.BEST_UPDATES_STREAM, count=1)
            names = list(self.client.scan_iter(match=keys.SEQUENCE_PATTERN, count=1000))
            for name, value in zip(names, self.client.mget(names) if names else [], strict=True):
                if value is not None:
                    self._know(name.removeprefix(keys.SEQUENCE_PATTERN[:-1]), int(value))
            self._history_cursor = tip[0][0] if tip else "0-0"
        read = self.client.xread({keys.BEST_UPDATES_STREAM: self._history_cursor}, count=BATCH, block=block_ms)
        for entry_id, fields in (e for _, batch in (read or []) for e in batch):
            self._history_cursor = entry_id
            try:
                update = decode(BestModelUpdate, fields.get("data", ""))
            except MessageError:
                continue
            self._know(update.study_key_hash, update.seq)

    def _know(self, study: str, seq: int) -> None:
        if seq > self.known_seq.get(study, 0):
            self.known_seq[study] = seq

    def _lead(self, leader: FencedLock) -> None:
        """Take the lead: publish and acknowledge under its token, rebuild from MLflow, recover pending entries."""
        self.leadership.lead(leader)
        self.stats.leads += 1
        prometheus.LEADERSHIP.labels("acquired").inc()
        log.info("Leading as %s (fencing token %s); rebuilding from MLflow.", self.consumer, leader.fencing_token)
        self.ensure_group()
        self.rebuild()
        self.recover_pending()

    def _drop(self, exc: Exception) -> None:
        """Lost the lead (frozen past the lease, or a partition): what this process holds may be stale. It is
        dropped; the next lead starts with a rebuild, and the entries it did not acknowledge are the new
        leader's."""
        self.stats.leads_lost += 1
        prometheus.LEADERSHIP.labels("lost").inc()
        self.state = SelectionState(self.config)
        self.published = {}
        log.warning("Lost the lead (%s); dropped the state and the batch in hand, will rebuild before leading.", exc)
