"""One selection config per study channel, and sequences that survive a Redis data loss (issue 25, breaks 6 and
9): the pure rules, the aggregator on fakeredis and a real MLflow store, the subscriber's re-sync."""

from __future__ import annotations

import logging
import time

import fakeredis
import pytest
from mlflow import MlflowClient

from podium.aggregator.service import Aggregator
from podium.coordination import keys
from podium.coordination.subscriber import Follower
from podium.core.channel import channel_rule, restored_counter, selection_config_hash
from podium.core.config import SelectionConfig
from podium.core.messages import BestModelUpdate
from podium.core.validation import parse_model
from podium.testing import Unfenced
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import CONFIG, committed_result, trial_run

S, T1, T2 = "s" * 64, "1" * 64, "2" * 64
#: The best objective (T1, 0.90 at 10 ms) ...
BY_OBJECTIVE = SelectionConfig()
#: ... or the fastest within 7 ms (T2, 0.85 at 5 ms).
FASTEST_CLOSE = parse_model(SelectionConfig, {"selection": {"policy": "tolerance", "max_latency_ms": 7}}, "t")


@pytest.fixture
def r():
    return fakeredis.FakeRedis(decode_responses=True)


def history(r) -> list[BestModelUpdate]:
    return [BestModelUpdate.model_validate_json(f["data"]) for _, f in r.xrange(keys.BEST_UPDATES_STREAM)]


def leader(r, tracking: MlflowTracking, cfg: SelectionConfig, name: str, take_over: bool = False) -> Aggregator:
    agg = Aggregator(r, tracking, cfg, name, take_over=take_over, leadership=Unfenced(r))
    agg.ensure_group()
    agg.rebuild()
    return agg


def update(seq: int) -> BestModelUpdate:
    return BestModelUpdate(
        study_key_hash=S,
        benchmark_config_hash=CONFIG,
        seq=seq,
        reason="first",
        best=None,
        candidates=0,
        policy="constraint",
        aggregation="median",
        published_at=time.time(),
    )


def test_the_selection_config_hash_names_every_setting() -> None:
    same = parse_model(SelectionConfig, {"selection": {"policy": "constraint"}}, "t")
    assert selection_config_hash(same) == selection_config_hash(BY_OBJECTIVE)
    assert selection_config_hash(FASTEST_CLOSE) != selection_config_hash(BY_OBJECTIVE)
    assert len(selection_config_hash(BY_OBJECTIVE)) == 64


@pytest.mark.parametrize(
    ("channel", "take_over", "rule"),
    [(None, False, "publish"), ("h1", False, "publish"), ("h2", False, "refuse"), ("h2", True, "take_over")],
)
def test_the_channel_rule(channel, take_over, rule) -> None:
    assert channel_rule(channel, "h1", take_over) == rule


def test_a_leader_with_another_config_leaves_the_channel_alone_until_told_to_take_it_over(
    r, client: MlflowClient, tracking: MlflowTracking, caplog: pytest.LogCaptureFixture
) -> None:
    trial_run(client, S, T1, 0.90)
    trial_run(client, S, T2, 0.85)
    committed_result(tracking, None, S, T1, 10.0, champion_run="c1", fast=True)
    committed_result(tracking, None, S, T2, 5.0, champion_run="c2", fast=True)
    h1, h2 = selection_config_hash(BY_OBJECTIVE), selection_config_hash(FASTEST_CLOSE)

    leader(r, tracking, BY_OBJECTIVE, "a")
    (first,) = history(r)
    assert (first.best.trial_key_hash, first.selection_config_hash, r.get(keys.selection_config(S))) == (T1, h1, h1)

    with caplog.at_level(logging.WARNING, "podium.aggregator"):
        leader(r, tracking, FASTEST_CLOSE, "b")  # a failover to another config: no flip, one line
    assert len(history(r)) == 1
    (line,) = [m for m in caplog.messages if "selection config" in m]
    assert h1[:12] in line and h2[:12] in line and "--take-over" in line

    leader(r, tracking, FASTEST_CLOSE, "c", take_over=True)
    taken = history(r)[-1]
    assert (taken.reason, taken.best.trial_key_hash, taken.selection_config_hash) == ("take_over", T2, h2)
    assert taken.seq > first.seq and r.get(keys.selection_config(S)) == h2

    leader(r, tracking, BY_OBJECTIVE, "d")  # the first config back: it now refuses in turn
    assert history(r)[-1] == taken


def test_the_channel_config_is_read_from_the_latest_value_when_its_key_is_gone(
    r, client: MlflowClient, tracking: MlflowTracking
) -> None:
    trial_run(client, S, T1, 0.90)
    trial_run(client, S, T2, 0.85)
    committed_result(tracking, None, S, T1, 10.0, champion_run="c1", fast=True)
    committed_result(tracking, None, S, T2, 5.0, champion_run="c2", fast=True)
    leader(r, tracking, BY_OBJECTIVE, "a")
    r.delete(keys.selection_config(S))
    agg = leader(r, tracking, FASTEST_CLOSE, "b")
    assert len(history(r)) == 1 and S in agg.refused


def test_after_a_flushall_a_study_s_sequence_goes_on_from_what_the_standby_followed(
    r, client: MlflowClient, tracking: MlflowTracking
) -> None:
    trial_run(client, S, T1, 0.90)
    committed_result(tracking, None, S, T1, 10.0, fast=True)
    standby = Aggregator(r, tracking, BY_OBJECTIVE, "b", leadership=Unfenced(r))
    standby.follow()  # Redis's counters: none yet
    leader(r, tracking, BY_OBJECTIVE, "a")
    committed_result(tracking, r, S, T1, 12.0, fast=True)
    committed_result(tracking, None, S, T1, 11.0, fast=True)
    standby.follow()  # the history's new entries
    before = history(r)
    assert standby.known_seq == {S: before[-1].seq}
    r.flushall()
    standby.ensure_group()
    standby.rebuild()  # leads after the loss: MLflow holds the study, Redis nothing
    (after,) = history(r)
    assert after.reason == "first" and after.seq == before[-1].seq + 1


def test_a_leader_that_rebuilds_after_a_flushall_goes_on_from_its_own_numbers(
    r, client: MlflowClient, tracking: MlflowTracking
) -> None:
    trial_run(client, S, T1, 0.90)
    committed_result(tracking, None, S, T1, 10.0, fast=True)
    agg = leader(r, tracking, BY_OBJECTIVE, "a")
    (before,) = history(r)
    r.flushall()
    agg.ensure_group()
    agg.rebuild()
    (after,) = history(r)
    assert after.seq == before.seq + 1 and r.get(keys.sequence(S)) == str(after.seq)


def test_a_counter_is_put_back_only_when_redis_lost_it_and_a_number_is_known() -> None:
    assert restored_counter(None, 22) == 22
    assert restored_counter(None, None) is None and restored_counter(None, 0) is None
    assert restored_counter(5, 22) is None


def test_the_subscriber_resyncs_when_the_sequence_went_back_and_drops_late_copies(
    r, caplog: pytest.LogCaptureFixture
) -> None:
    follower = Follower(r, S)
    assert [u.seq for u in follower._fresh(update(22))] == [22]
    r.set(keys.best_latest(S, CONFIG), update(22).encode())
    assert follower._fresh(update(20)) == []  # a late copy: Redis still holds 22
    assert follower._fresh(update(22)) == []
    r.flushall()  # then an aggregator restarts the counter low (an older podium at 1) and publishes 1, 2
    one, two = update(1), update(2)
    r.set(keys.best_latest(S, CONFIG), two.encode())  # the snapshot already holds 2
    with caplog.at_level(logging.WARNING, "podium.coordination.subscriber"):
        assert [u.seq for u in follower._fresh(one)] == [1, 2]
    (line,) = caplog.messages
    assert "22" in line and "re-syncing" in line
    assert follower._fresh(two) == [] and [u.seq for u in follower._fresh(update(3))] == [3]
