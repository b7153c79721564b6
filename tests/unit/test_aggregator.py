"""The aggregator's logic on fakeredis, over the in-memory run store (``podium.testing.MemoryRunStore``, held
to MLflow's contract by tests/unit/test_run_store_contract.py) or a real MLflow store where MLflow's own
behaviour is part of the test: it reuses the core's selection exactly."""

from __future__ import annotations

import time

import fakeredis
import pytest
from mlflow import MlflowClient

from podium.aggregator.service import TRIAL_REFRESH_S, Aggregator
from podium.coordination import keys
from podium.core.config import SelectionConfig
from podium.core.decision import candidate_view
from podium.core.messages import BestModelUpdate
from podium.core.state import select_all
from podium.core.store import RunReads
from podium.core.validation import parse_model
from podium.testing import MemoryRunStore, Unfenced
from podium.tracking.tracker import MlflowTracking
from tests.doubles import ManualClock
from tests.pipeline_helpers import CONFIG, committed_result, trial_run

S, T1, T2 = "s" * 64, "1" * 64, "2" * 64


def starts(n: int) -> list[int]:
    """``n`` distinct, increasing MLflow start times (epoch ms) of runs measured a minute ago, a second apart."""
    first = int(time.time() * 1000) - 60_000
    return [first + 1000 * i for i in range(n)]


@pytest.fixture
def r():
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def memory() -> MemoryRunStore:
    return MemoryRunStore()


def aggregator(
    r, tracking: RunReads, aggregation: str = "median", name: str = "agg-1", clock: ManualClock | None = None
) -> Aggregator:
    cfg = parse_model(SelectionConfig, {"benchmark": {"latency_aggregation": aggregation}}, "test")
    agg = Aggregator(r, tracking, cfg, name, clock=clock or ManualClock(), leadership=Unfenced(r))
    agg.ensure_group()
    agg.rebuild()
    return agg


def history(r) -> list[BestModelUpdate]:
    return [BestModelUpdate.model_validate_json(f["data"]) for _, f in r.xrange(keys.BEST_UPDATES_STREAM)]


def drain(agg: Aggregator) -> None:
    while agg.step(block_ms=10):
        pass


@pytest.mark.parametrize(("aggregation", "expected"), [("median", 200.0), ("latest", 210.0), ("mean", 560 / 3)])
def test_200_150_210_through_the_stream(r, memory: MemoryRunStore, aggregation, expected) -> None:
    memory.add_trial(S, T1, 0.9)
    agg = aggregator(r, memory, aggregation)
    for latency, start in zip((200.0, 150.0, 210.0), starts(3), strict=True):
        committed_result(memory, r, S, T1, latency, start_time=start)
    drain(agg)
    updates = history(r)
    assert [u.seq for u in updates] == list(range(1, len(updates) + 1))
    assert updates[0].reason == "first"
    final = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert final == updates[-1]
    assert final.best.latency_ms == pytest.approx(expected) and final.best.benchmark_runs_count == 3
    if aggregation != "latest":  # with two or more runs, median and mean never publish the outlier
        assert all(u.best.latency_ms != 150.0 for u in updates if u.best.benchmark_runs_count >= 2)


def test_replays_and_malformed_entries(r, memory: MemoryRunStore) -> None:
    memory.add_trial(S, T1, 0.9)
    agg = aggregator(r, memory)
    result = committed_result(memory, r, S, T1, 10.0)
    r.xadd(keys.BENCHMARKS_STREAM, {"data": result.encode()})  # the same result again
    r.xadd(keys.BENCHMARKS_STREAM, {"data": "{not json"})
    r.xadd(keys.BENCHMARKS_STREAM, {"data": '{"schema_version": 9}'})
    r.xadd(keys.BENCHMARKS_STREAM, {"other": "field"})
    drain(agg)
    assert len(history(r)) == 1 and agg.stats.replays == 1
    dead = r.xrange(keys.DEAD_LETTERS_STREAM)
    assert len(dead) == 3
    errors = [f["error"] for _, f in dead]
    assert "not JSON" in errors[0] and "schema_version 9 is not supported" in errors[1]
    assert all(f["source"] == "result" for _, f in dead)
    assert r.xpending(keys.BENCHMARKS_STREAM, keys.AGGREGATOR_GROUP)["pending"] == 0


def test_equals_podium_select_and_restart_counts_nothing_twice(r, memory: MemoryRunStore) -> None:
    """A restarted aggregator rebuilds from the store what the first one had applied: it publishes nothing, every
    result delivered again is a replay (no group counts a run twice), a new result is counted once, and what it
    publishes is what ``podium select`` says of the same runs, field for field."""
    memory.add_trial(S, T1, 0.90)
    memory.add_trial(S, T2, 0.88)
    agg = aggregator(r, memory)
    times = starts(6)
    sent = [
        committed_result(memory, r, S, t, lat, champion_run=f"champion-{t[:4]}", start_time=start)
        for (t, lat), start in zip(((T1, 30.0), (T2, 12.0), (T1, 31.0), (T2, 11.0), (T1, 29.0)), times, strict=False)
    ]
    drain(agg)
    before = history(r)
    assert before[-1].best.trial_key_hash == T1 and before[-1].best.benchmark_runs_count == 3

    restarted = aggregator(r, memory, name="agg-2")
    assert restarted.stats.published == 0 and history(r) == before  # rebuilt the same: nothing to say
    for result in sent:  # every result delivered again (a producer's retry, a replayed stream)
        r.xadd(keys.BENCHMARKS_STREAM, {"data": result.encode()})
    drain(restarted)
    assert (restarted.stats.replays, restarted.stats.published) == (5, 0) and history(r) == before

    new = committed_result(memory, None, S, T1, 32.0, champion_run=f"champion-{T1[:4]}", start_time=times[5])
    r.xadd(keys.BENCHMARKS_STREAM, {"data": new.encode()})
    r.xadd(keys.BENCHMARKS_STREAM, {"data": new.encode()})  # and delivered twice
    drain(restarted)
    (update,) = history(r)[len(before) :]
    assert update.seq == before[-1].seq + 1 and update.reason == "figures_changed"
    assert update.best.benchmark_runs_count == 4  # T1's four runs, each once

    ids = memory.experiment_ids()
    (batch,), _ = select_all(memory.load_benchmarks(ids), memory.load_trials(ids), SelectionConfig())
    latest = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert latest == update
    assert latest.best == candidate_view(batch.best) and latest.candidates == len(batch.candidates) == 2


def test_a_result_before_its_trial_is_joined_when_the_trial_appears(r, client: MlflowClient, tracking) -> None:
    clock = ManualClock()
    agg = aggregator(r, tracking, clock=clock)
    committed_result(tracking, r, S, T1, 5.0)
    drain(agg)
    assert history(r) == []  # no trial run yet: no candidate
    trial_run(client, S, T1, 0.7)
    clock.advance(TRIAL_REFRESH_S / 2)
    committed_result(tracking, r, S, T1, 6.0)
    drain(agg)
    assert history(r) == []  # a missing trial is looked up again only after TRIAL_REFRESH_S
    clock.advance(TRIAL_REFRESH_S / 2)
    committed_result(tracking, r, S, T1, 7.0)
    drain(agg)
    (update,) = history(r)  # the trial joined and the new result arrived in one batch: one update, all in it
    assert (update.reason, update.best.benchmark_runs_count, update.best.f1_score) == ("first", 3, 0.7)


def test_new_best_reporter_is_rate_limited_and_writes_files(r, client: MlflowClient, tracking, tmp_path) -> None:
    from podium.aggregator.report import NewBestReporter

    trial_run(client, S, T1, 0.9)
    trial_run(client, S, T2, 0.95)
    reporter = NewBestReporter(tracking, SelectionConfig(), tmp_path / "reports", min_interval_s=3600)
    calls = []
    agg = Aggregator(
        r,
        tracking,
        SelectionConfig(),
        "agg",
        on_new_best=lambda sel: calls.append(reporter(sel)),
        leadership=Unfenced(r),
    )
    agg.ensure_group()
    agg.rebuild()
    committed_result(tracking, r, S, T1, 10.0, champion_run="c1")
    drain(agg)
    committed_result(tracking, r, S, T2, 5.0, champion_run="c2")  # a new best: reported? rate-limited
    drain(agg)
    reporter.close()
    assert calls == [True, False]
    assert len(list((tmp_path / "reports").glob("*.png"))) == 1


def test_champion_alias_follows_the_new_best(r, client: MlflowClient, tracking) -> None:
    from podium.aggregator.alias import ChampionAlias

    trial_run(client, S, T1, 0.90)
    trial_run(client, S, T2, 0.99)
    alias = ChampionAlias(client, "tagger-{study}-{config}")
    agg = Aggregator(r, tracking, SelectionConfig(), "agg", on_new_best=alias, leadership=Unfenced(r))
    agg.ensure_group()
    agg.rebuild()
    committed_result(tracking, r, S, T1, 10.0, champion_run="c1")
    drain(agg)
    name = f"tagger-{S[:12]}-{CONFIG[:12]}"
    first = client.get_model_version_by_alias(name, "champion")
    committed_result(tracking, r, S, T2, 10.0, champion_run="c2")  # better objective, same latency: a new best
    drain(agg)
    second = client.get_model_version_by_alias(name, "champion")
    assert first.version != second.version
    assert second.tags["podium.trial_key_hash"] == T2 and first.tags["podium.trial_key_hash"] == T1
    assert second.run_id == BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG))).best.artifact_run_id


def test_a_new_candidate_that_does_not_win_rewrites_the_snapshot(
    r, client: MlflowClient, tracking: MlflowTracking
) -> None:
    trial_run(client, S, T1, 0.9)
    trial_run(client, S, T2, 0.5)
    cfg = parse_model(SelectionConfig, {"selection": {"policy": "tolerance"}}, "test")
    agg = Aggregator(r, tracking, cfg, "agg-1", leadership=Unfenced(r))
    agg.ensure_group()
    agg.rebuild()
    committed_result(tracking, r, S, T1, 10.0)
    drain(agg)
    assert BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG))).candidates == 1
    committed_result(tracking, r, S, T2, 5.0)  # faster but far below on the objective: not the best
    drain(agg)
    snapshot = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert (snapshot.candidates, snapshot.reason, snapshot.best.trial_key_hash) == (2, "candidates_changed", T1)
    assert [u.reason for u in history(r)] == ["first", "candidates_changed"]


def test_an_uncommitted_run_is_dead_lettered_and_a_skewed_start_replaced(
    r, client: MlflowClient, tracking: MlflowTracking
) -> None:
    from tests.pipeline_helpers import result_event, result_tags

    trial_run(client, S, T1, 0.9)
    agg = aggregator(r, tracking, "latest")
    running, start = tracking.start_benchmark_run(result_tags(tracking, S, T1, "c-running", CONFIG))
    r.xadd(keys.BENCHMARKS_STREAM, {"data": result_event(running, start, S, T1, 1.0, "c-running").encode()})
    future = int(time.time() * 1000) + 7_200_000  # written by a client two hours ahead
    ahead, _ = tracking.start_benchmark_run(result_tags(tracking, S, T1, "c-ahead", CONFIG), start_time=future)
    client.log_metric(ahead, "latency_batch_1_ms", 50.0)
    tracking.finish_run(ahead)
    r.xadd(keys.BENCHMARKS_STREAM, {"data": result_event(ahead, future, S, T1, 50.0, "c-ahead").encode()})
    committed_result(tracking, r, S, T1, 7.0, champion_run="c-later")  # measured after it, on a true clock
    drain(agg)
    (letter,) = [f for _, f in r.xrange(keys.DEAD_LETTERS_STREAM)]
    assert f"run {running} is RUNNING in MLflow, not FINISHED" in letter["error"]
    assert agg.stats.skewed == 1
    final = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert final.best.latency_ms == 7.0  # the run two hours "ahead" does not pin `latest`


def test_updates_leave_out_an_unstable_candidate_and_count_it(r, client: MlflowClient, tracking) -> None:
    """T1 is better on the objective but its only run is unstable: shown (counted, excluded), not competing; once
    clean runs of it arrive it wins on the objective."""
    trial_run(client, S, T1, 0.9)
    trial_run(client, S, T2, 0.8)
    agg = aggregator(r, tracking)
    committed_result(tracking, r, S, T1, 5.0, champion_run="c1", stable=False)
    committed_result(tracking, r, S, T2, 50.0, champion_run="c2", stable=True)
    drain(agg)
    final = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert final.best.trial_key_hash == T2 and not final.best.unstable
    assert (final.candidates, final.excluded, final.unstable_candidates) == (1, 1, 1)
    ids = tracking.experiment_ids()
    selections, _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), agg.config)
    assert selections[0].best.benchmark_run_id == final.best.benchmark_run_id
    (out,) = selections[0].excluded
    assert out.trial_key_hash == T1 and out.doubt == "unstable" and "in doubt" in (out.excluded or "")
    committed_result(tracking, r, S, T1, 5.0, champion_run="c1", stable=True)  # clean runs of T1
    committed_result(tracking, r, S, T1, 5.0, champion_run="c1", stable=True)
    drain(agg)
    final = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert final.best.trial_key_hash == T1 and not final.best.unstable and final.unstable_candidates == 0
    assert final.reason == "new_best" and final.best.latency_figure == "p50, median of 2 runs"


def test_with_doubt_let_in_an_unstable_best_is_marked(r, client: MlflowClient, tracking) -> None:
    trial_run(client, S, T1, 0.9)
    trial_run(client, S, T2, 0.8)
    cfg = parse_model(SelectionConfig, {"selection": {"include_unstable": True}}, "test")
    agg = Aggregator(r, tracking, cfg, "agg-1", leadership=Unfenced(r))
    agg.ensure_group()
    agg.rebuild()
    committed_result(tracking, r, S, T1, 5.0, champion_run="c1", stable=False)
    committed_result(tracking, r, S, T2, 50.0, champion_run="c2", stable=True)
    drain(agg)
    final = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert final.best.trial_key_hash == T1 and final.best.unstable and final.unstable_candidates == 1
    assert final.best.doubt == "unstable" and final.excluded == 0


class CountingConnections(fakeredis.FakeRedis):
    """Counts round trips: each command sent alone, and each pipeline sent whole."""

    round_trips = 0

    def execute_command(self, *args, **options):
        type(self).round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        real = pipe.execute

        def execute(raise_on_error: bool = True):
            type(self).round_trips += 1
            return real(raise_on_error)

        pipe.execute = execute
        return pipe


def test_a_step_of_one_event_is_two_round_trips_and_acknowledges_after_publishing(
    client: MlflowClient, tracking: MlflowTracking
) -> None:
    """The read, then the publish with the acknowledgement riding in the same round trip (after the publish);
    a step that publishes nothing (a replay) still acknowledges."""
    r = CountingConnections(decode_responses=True)
    trial_run(client, S, T1, 0.9)
    agg = aggregator(r, tracking)  # its clock stands still: only its first step claims dead consumers' entries
    first, second = starts(2)
    result = committed_result(tracking, r, S, T1, 10.0, start_time=first)
    agg.step(block_ms=10)  # the first publish of a study reads Redis's sequence once
    committed_result(tracking, r, S, T1, 20.0, start_time=second)  # in MLflow, and its event in the stream
    before = CountingConnections.round_trips
    assert agg.step(block_ms=10) == 1
    assert CountingConnections.round_trips - before == 2
    assert len(history(r)) == 2 and r.xpending(keys.BENCHMARKS_STREAM, keys.AGGREGATOR_GROUP)["pending"] == 0
    r.xadd(keys.BENCHMARKS_STREAM, {"data": result.encode()})  # a replay: nothing to publish
    assert agg.step(block_ms=10) == 1
    assert len(history(r)) == 2 and r.xpending(keys.BENCHMARKS_STREAM, keys.AGGREGATOR_GROUP)["pending"] == 0


@pytest.mark.parametrize("broken", ["key", "negative", "nan"])
def test_a_run_the_live_check_refuses_is_refused_by_a_rebuild_and_by_podium_select_too(
    r, client: MlflowClient, tracking: MlflowTracking, broken: str
) -> None:
    """A FINISHED run written straight to MLflow with a key that does not recompute from its parts, or a latency
    no measurement gives: dead-lettered live, and left out alike after a restart and by ``podium select`` (one
    rule on every path: subscribers never see the best change with a restart)."""
    from mlflow.entities import Metric

    from tests.pipeline_helpers import result_event, result_tags

    trial_run(client, S, T1, 0.90)
    trial_run(client, S, T2, 0.90)
    agg = aggregator(r, tracking)
    committed_result(tracking, r, S, T1, 10.0, champion_run="honest")
    tags = result_tags(tracking, S, T2, "forged", CONFIG)
    if broken == "key":
        tags[tracking.tags.benchmark.key] = "ab" * 32  # well-formed, but not the hash of the run's parts
    latency = {"key": 1.0, "negative": -1000.0, "nan": float("nan")}[broken]
    run_id, start = tracking.start_benchmark_run(tags)
    client.log_batch(run_id, metrics=[Metric("latency_batch_1_p50_ms", latency, 0, 0)])  # the ranked figure
    tracking.finish_run(run_id)
    event = result_event(run_id, start, S, T2, 1.0, "forged")
    if broken == "key":
        event = event.model_copy(update={"benchmark_key": "ab" * 32})
    r.xadd(keys.BENCHMARKS_STREAM, {"data": event.encode()})
    drain(agg)
    (letter,) = [f["error"] for _, f in r.xrange(keys.DEAD_LETTERS_STREAM)]
    assert run_id in letter
    live = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert live.best.trial_key_hash == T1

    restarted = aggregator(r, tracking, name="agg-2")
    assert restarted.stats.published == 0  # nothing changed: the rebuild left the broken run out as well
    assert BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG))) == live
    ids = tracking.experiment_ids()
    (batch,), _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), SelectionConfig())
    assert batch.best.trial_key_hash == T1 and [c.trial_key_hash for c in batch.candidates] == [T1]


def test_a_challenger_within_noise_is_published_as_such_and_the_best_stays(r, client: MlflowClient, tracking) -> None:
    """One slightly faster run of an equally good model: subscribers hear "challenger within noise", not a new
    best; the champion hook is not called; ``podium select`` on the same runs says the same. A clearly faster
    run of it then replaces the best."""
    trial_run(client, S, T1, 0.9)
    trial_run(client, S, T2, 0.9)
    agg = aggregator(r, tracking)
    new_bests = []
    agg.on_new_best = new_bests.append
    start = iter(starts(9))
    for latency in (10.0, 10.2, 9.9):
        committed_result(tracking, r, S, T1, latency, champion_run="c1", start_time=next(start))
    drain(agg)
    committed_result(
        tracking, r, S, T2, 9.7, champion_run="c2", start_time=next(start)
    )  # 3 % faster on one run, within T1's spread
    drain(agg)
    final = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert final.reason == "within_noise" and final.best.trial_key_hash == T1
    assert final.challenger is not None and final.challenger.trial_key_hash == T2
    assert final.note == f"challenger {T2[:12]} within noise" and final.statistic == "p50"
    assert [s.best.trial_key_hash for s in new_bests] == [T1]  # the first publication only
    assert not any(u.reason == "new_best" for u in history(r))
    ids = tracking.experiment_ids()
    (batch,), _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), agg.config)
    assert (batch.best.trial_key_hash, batch.challenger.trial_key_hash) == (T1, T2)
    bests = []
    for _ in range(5):  # re-measured: 20 % faster each time; its own first run (9.7) widens the interval
        committed_result(tracking, r, S, T2, 8.0, champion_run="c2", start_time=next(start))
        drain(agg)
        bests.append(BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG))).best.trial_key_hash)
    assert bests == [T1, T1, T1, T1, T2]  # 4 runs at 8.0: still inside the 95 % bound; the 5th settles it
    final = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert final.reason == "new_best" and final.challenger is None
    assert [s.best.trial_key_hash for s in new_bests] == [T1, T2]


def test_ranked_by_throughput_at_the_sla_the_stream_equals_podium_select(r, client: MlflowClient, tracking) -> None:
    """``selection.policy: throughput_at_sla``: the highest throughput at the p99 budget wins (higher is better),
    a run without a load benchmark is shown, not competing, and the aggregator publishes what ``podium select``
    says of the same runs, field for field."""
    from podium.core.metric_names import THROUGHPUT_AT_SLA

    cfg = parse_model(SelectionConfig, {"selection": {"policy": "throughput_at_sla"}}, "test")
    for t in (T1, T2, T3 := "3" * 64):
        trial_run(client, S, t, 0.9)
    agg = Aggregator(r, tracking, cfg, "agg-1", clock=ManualClock(), leadership=Unfenced(r))
    agg.ensure_group()
    agg.rebuild()
    start = iter(starts(7))
    for t, latency, throughput in ((T1, 5.0, 100.0), (T1, 5.1, 104.0), (T1, 4.9, 98.0)):
        committed_result(
            tracking, r, S, t, latency, "c1", start_time=next(start), extra_metrics={THROUGHPUT_AT_SLA: throughput}
        )
    committed_result(tracking, r, S, T3, 1.0, "c3", start_time=next(start))  # faster serially, no load levels
    for throughput in (300.0, 310.0, 295.0):  # slower serially, three times the throughput at the budget
        committed_result(
            tracking, r, S, T2, 9.0, "c2", start_time=next(start), extra_metrics={THROUGHPUT_AT_SLA: throughput}
        )
    drain(agg)
    latest = BestModelUpdate.model_validate_json(r.get(keys.best_latest(S, CONFIG)))
    assert latest.best.trial_key_hash == T2 and latest.best.throughput_at_sla_per_s == 300.0
    assert latest.statistic == "throughput_at_sla" and latest.excluded == 1 and latest.candidates == 2

    ids = tracking.experiment_ids()
    (batch,), _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), cfg)
    assert latest.best == candidate_view(batch.best) and [c.trial_key_hash for c in batch.candidates] == [T2, T1]
    assert [(c.trial_key_hash, c.excluded) for c in batch.excluded] == [
        (T3, "no load benchmark with a p99 budget (benchmarking.load levels and load.sla_p99_ms)")
    ]
