"""Helpers that write what training code and workers write: trial runs and committed benchmark results."""

from __future__ import annotations

import redis
from mlflow import MlflowClient
from mlflow.entities import Metric

from podium import names
from podium.adapters.mlflow_tracking import MlflowTracking
from podium.core.identity import BenchmarkIdentity
from podium.core.messages import BenchmarkResult
from podium.core.records import Champion
from podium.core.run_tags import benchmark_run_tags

CONFIG = "c" * 64


def trial_run(client: MlflowClient, study: str, trial: str, f1: float, stage: str = "hpo_trial") -> str:
    exp = client.get_experiment_by_name("training")
    exp_id = exp.experiment_id if exp else client.create_experiment("training")
    run = client.create_run(exp_id, tags={"code.stage": stage, "code.grouping.study_key_hash": study,
                                          "code.grouping.trial_key_hash": trial})
    client.log_batch(run.info.run_id, metrics=[Metric("macro-f1", f1, 0, 0)])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def committed_result(tracking: MlflowTracking, r: redis.Redis | None, study: str, trial: str, latency: float,
                     champion_run: str = "champion", config_hash: str = CONFIG) -> BenchmarkResult:
    """A FINISHED benchmark run in MLflow and (when ``r``) its result event in the stream, as a worker commits."""
    champion = Champion(champion_run, study, trial, "d", "e")
    identity = BenchmarkIdentity(champion_run, "d", "e", config_hash)
    tags = benchmark_run_tags(tracking.tags, identity, champion, backend="synthetic", target="cpu", worker="w")
    run_id = tracking.log_benchmark_run(tags, {"latency_batch_1_ms": latency}, {"latency": latency})
    run = tracking.client.get_run(run_id)
    result = BenchmarkResult(benchmark_key=identity.key, run_id=run_id, start_time=run.info.start_time,
                             study_key_hash=study, trial_key_hash=trial, config_hash=config_hash,
                             champion_run_id=champion_run, metrics={"latency_batch_1_ms": latency},
                             device="synthetic", worker="w", fencing_token=1)
    if r is not None:
        r.xadd(names.BENCHMARKS_STREAM, {"data": result.encode()})
    return result
