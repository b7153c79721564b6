"""MLflow's write statements compiled before a worker's first benchmark, with nothing written.

MLflow's SQLAlchemy store compiles each INSERT and UPDATE the first time a process sends it: 10-20 ms of a
worker's first benchmark (``create_run``, ``log_batch``, ``set_terminated``) that no later benchmark pays. A
worker warms them by making one benchmark's writes inside a single database transaction that it then rolls
back: the compiled statements stay in the engine's cache, and no row is ever committed. The transaction holds
the database's write lock for those few milliseconds; a training process writing at that instant waits that
long (MLflow gives sqlite a 20 s busy timeout). A store reached over HTTP compiles nothing here: skipped.
"""

from __future__ import annotations

import logging

from mlflow import MlflowClient
from mlflow.entities import Metric, RunStatus, RunTag

from podium.tracking.one_transaction import database_store, one_transaction

log = logging.getLogger(__name__)

#: What the rolled-back writes look like: a benchmark run's size (tags in create_run, metrics and result tags
#: in one log_batch, the terminal status).
WARM_TAGS = 16
WARM_METRICS = 14


def warm_writes(client: MlflowClient, experiment_id: str) -> bool:
    """Compile a benchmark run's writes on ``client``'s database store inside one rolled-back transaction.
    True when done; False (logged) when the store is not a database or the attempt failed: nothing is lost
    then but the warm-up itself."""
    store = database_store(client)
    if store is None:
        return False
    try:
        with one_transaction(store, commit=False) as rolled_back:
            tags = [RunTag(f"podium.warm.{i}", "x") for i in range(WARM_TAGS)]
            run = rolled_back.create_run(experiment_id, "podium", 0, tags, "podium-warm-up")
            metrics = [Metric(f"podium.warm.{i}", 0.0, 0, 0) for i in range(WARM_METRICS)]
            rolled_back.log_batch(run.info.run_id, metrics, [], [RunTag("podium.warm.result", "x")])
            rolled_back.update_run_info(run.info.run_id, RunStatus.FINISHED, 0, None)
        return True
    except Exception as exc:  # a warm-up only: the first benchmark compiles them itself
        log.info("MLflow's write statements not warmed (%s): the first benchmark compiles them.", exc)
        return False
