"""Faults from the field, round 3 (issue 25: breaks 6 and 9) on real processes: a real redis-server, real
`podium aggregator` processes, `podium.subscribe` in a thread, a real MLflow sqlite store.

6. two aggregators with different selection configs: a failover does not flip the best; the one that differs
   logs both config hashes and publishes nothing, until an aggregator started with --take-over switches the
   channel, with an update saying so;
9. FLUSHALL under a live leader and a standby: the study's sequence continues above every earlier number and the
   subscriber yields every later update; requests a queue lost are sent again from the producers' sent log, and
   after a FLUSHALL (which takes the log too) `podium backfill` sends the champions again from MLflow.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.coordination import keys
from podium.coordination.inflight import _request_fields
from podium.core.channel import selection_config_hash
from podium.core.messages import BestModelUpdate
from podium.core.records import Champion
from podium.core.tags import TagsRegistry
from podium.producers.enqueue import enqueue_benchmark
from podium.settings.files import load_selection_config
from podium.tracking.tracker import MlflowTracking
from tests.chaos.test_field_round3 import committed, full_log, history, latest
from tests.pipeline_helpers import Pipeline, collect, next_update, synthetic_config, trial_run
from tests.servers import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.server]
STUDY = "a" * 64
T1, T2 = "1" * 64, "2" * 64


def other_config(p: Pipeline, folder: Path) -> Path:
    """The pipeline's selection config with another policy: the fastest within 7 ms (T2), not the best objective."""
    text = (Path(p.env["PODIUM_CONFIG_DIR"]) / "best_model_selection.yaml").read_text()
    changed = text.replace("policy: constraint", "policy: tolerance").replace(
        "max_latency_ms: null", "max_latency_ms: 7"
    )
    assert changed != text
    path = folder / "best_model_selection.yaml"
    path.write_text(changed)
    return path


def leads(proc) -> bool:
    return "Rebuilt from MLflow" in full_log(proc)


# ---------------------------------------------------------------- 6. two selection configs, one channel


def test_a_failover_to_another_selection_config_flips_nothing_until_told_to_take_over(
    pipeline: Pipeline, store: str, tmp_path: Path
) -> None:
    client, tracking = MlflowClient(store), MlflowTracking.connect(store, TagsRegistry())
    trial_run(client, STUDY, T1, 0.90)
    trial_run(client, STUDY, T2, 0.85)
    committed(tracking, None, STUDY, T1, 10.0, "c1")
    committed(tracking, None, STUDY, T2, 5.0, "c2")
    second = other_config(pipeline, tmp_path)
    h1 = selection_config_hash(load_selection_config(None, Path(pipeline.env["PODIUM_CONFIG_DIR"])))
    h2 = selection_config_hash(load_selection_config(second))

    a = pipeline.start("agg-a", "aggregator", "--name", "agg-a")
    assert wait_until(lambda: leads(a), timeout=90), full_log(a)
    first = latest(pipeline, STUDY)
    assert first is not None and (first.best.trial_key_hash, first.selection_config_hash) == (T1, h1)
    b = pipeline.start("agg-b", "aggregator", "--name", "agg-b", "--config", str(second))
    assert wait_until(lambda: "podium aggregator:" in full_log(b), timeout=90), full_log(b)
    a.stop()  # failover to the other config
    assert wait_until(lambda: leads(b), timeout=90), full_log(b)
    refusals = [line for line in full_log(b).splitlines() if "--take-over" in line]
    assert len(refusals) == 1 and h1[:12] in refusals[0] and h2[:12] in refusals[0], full_log(b)[-3000:]
    assert history(pipeline) == [first] and pipeline.redis.get(keys.selection_config(STUDY)) == h1  # no flip

    c = pipeline.start("agg-c", "aggregator", "--name", "agg-c", "--config", str(second), "--take-over")
    assert wait_until(lambda: "podium aggregator:" in full_log(c), timeout=90), full_log(c)
    b.stop()
    assert wait_until(lambda: leads(c), timeout=90), full_log(c)
    assert wait_until(lambda: len(history(pipeline)) == 2, timeout=30), full_log(c)[-3000:]
    taken = history(pipeline)[-1]
    assert (taken.reason, taken.best.trial_key_hash, taken.selection_config_hash) == ("take_over", T2, h2)
    assert taken.seq > first.seq and pipeline.redis.get(keys.selection_config(STUDY)) == h2


# ---------------------------------------------------------------- 9. FLUSHALL


def test_after_a_flushall_sequences_go_on_and_the_subscriber_misses_nothing(pipeline: Pipeline, store: str) -> None:
    client, tracking = MlflowClient(store), MlflowTracking.connect(store, TagsRegistry())
    trial_run(client, STUDY, T1, 0.90)
    committed(tracking, None, STUDY, T1, 10.0, "c1")
    a = pipeline.start("agg-a", "aggregator", "--name", "agg-a")
    assert wait_until(lambda: leads(a), timeout=90), full_log(a)
    b = pipeline.start("agg-b", "aggregator", "--name", "agg-b")  # the standby
    assert wait_until(lambda: "podium aggregator:" in full_log(b), timeout=90), full_log(b)
    out: queue.Queue[BestModelUpdate] = queue.Queue()
    stop = threading.Event()
    thread = collect(stop, pipeline.redis_server.url, STUDY, out)
    try:
        got = [next_update(out)]  # the latest value first
        for latency in (11.0, 12.0, 13.0):  # each run of the benchmark changes its median: one update each
            committed(tracking, pipeline, STUDY, T1, latency, "c1")
            got.append(next_update(out))
        before = history(pipeline)
        assert [u.seq for u in got] == [u.seq for u in before]

        pipeline.redis.flushall()  # every key: counters, latest values, history, queue, consumer group, leader
        a.stop()  # and the leader goes: the standby (or nobody, first) leads on an empty Redis
        after = [next_update(out)]  # the rebuild republishes the study (its latest value was lost)
        for latency in (14.0, 15.0, 16.0, 17.0):
            committed(tracking, pipeline, STUDY, T1, latency, "c1")
            after.append(next_update(out))
        assert wait_until(lambda: leads(b), timeout=30), full_log(b)
        published = history(pipeline)
        assert [u.seq for u in after] == [u.seq for u in published]  # every update after the loss, in order
        assert published[0].seq == before[-1].seq + 1  # the sequence goes on from the highest number known
        assert after[0].best.benchmark_runs_count == 4 and after[-1].best.benchmark_runs_count == 8
        logs = full_log(a) + full_log(b)  # whoever led first after the loss put the counter back
        assert logs.count("Redis lost the sequence counter of 1 study(ies)") == 1, logs[-3000:]
    finally:
        stop.set()
        thread.join(timeout=10)


def backfill(p: Pipeline, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "podium", "backfill", *args], capture_output=True, text=True, timeout=300, env=p.env
    )


def queued_keys(p: Pipeline) -> list[str]:
    return sorted(_request_fields(json.loads(m))["benchmark_key"] for m in p.redis.lrange(keys.queue("cpu"), 0, -1))


def test_requests_a_queue_lost_are_sent_again_and_a_flushall_leaves_the_champions(
    pipeline: Pipeline, store: str
) -> None:
    client = MlflowClient(store)
    runs = [trial_run(client, STUDY, f"{k:064x}", 0.8 + k / 100) for k in range(8)]
    adhoc = synthetic_config(batch_sizes=[1, 4])  # a config of its own: no champion backfill would send it
    sent = [
        enqueue_benchmark(pipeline.app, Champion(run, STUDY, f"{k:064x}", "d", "e"), adhoc)
        for k, run in enumerate(runs)
    ]
    assert pipeline.redis.xlen(keys.SENT_STREAM) == 8
    pipeline.redis.delete(keys.queue("cpu"))  # the queue loses its 8 messages (a purge, an eviction)

    again = backfill(pipeline, "--sent", "--sent-older-than", "0")
    assert again.returncode == 0, again.stderr
    assert "8 lost and sent again" in again.stdout, again.stdout
    assert queued_keys(pipeline) == sorted(e.benchmark_key for e in sent)  # the same requests, once each
    twice = backfill(pipeline, "--sent", "--sent-older-than", "0")
    assert "8 answered, queued, in flight" in twice.stdout and "0 lost" in twice.stdout, twice.stdout
    assert len(queued_keys(pipeline)) == 8

    pipeline.redis.flushall()  # the queue and the sent log: only MLflow is left
    empty = backfill(pipeline, "--sent", "--sent-older-than", "0")
    assert empty.returncode == 0 and "Redis lost it too" in empty.stdout, empty.stdout
    champions = backfill(pipeline)  # the champions come back under the current config; the ad-hoc config does not
    assert champions.returncode == 0 and "8 benchmark request(s) enqueued" in champions.stdout, champions.stdout
    assert len(queued_keys(pipeline)) == 8 and not set(queued_keys(pipeline)) & {e.benchmark_key for e in sent}
