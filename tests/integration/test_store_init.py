"""podium never creates or migrates an MLflow store: its processes wait, read-only, until the training code's
first MLflow call has created it. Started before, during or after that first write, they never make the user's
own MLflow calls fail (MLflow migrates a store the moment a client is built on it: a podium process doing so
raced the training script, which died with an alembic error)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.core.tags import TagsRegistry
from podium.errors import StoreNotReady
from podium.tracking.readiness import schema_state, store_state
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import Pipeline
from tests.servers import wait_until

#: What a team's training script does first: plain mlflow, nothing of podium's.
TRAINING = """
import sys
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("training")
with mlflow.start_run():
    mlflow.log_param("lr", 0.1)
    mlflow.log_metric("val_f1", 0.9)
print("trained")
"""

#: What a podium process does when it starts: open the store (waiting while it is not ready), then read it.
OPENER = """
import sys, time
from podium.core.tags import TagsRegistry
from podium.errors import StoreNotReady
from podium.tracking.tracker import MlflowTracking
deadline = time.monotonic() + 120
while True:
    try:
        tracking = MlflowTracking.connect(sys.argv[1], TagsRegistry())
        break
    except StoreNotReady:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.01)
print(len(tracking.experiment_ids()), "experiments")
"""

#: Each repeat is a fresh store; bench/store_race.py runs 50 of them.
REPEATS = 2


def _run_all(commands: list[list[str]]) -> list[tuple[int, str]]:
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in commands]
    out = []
    for p in procs:
        text, _ = p.communicate(timeout=240)
        out.append((p.returncode, text))
    return out


def test_podium_processes_opening_a_store_beside_the_first_training_write_never_break_it(tmp_path: Path) -> None:
    for i in range(REPEATS):
        uri = f"sqlite:///{tmp_path / f'fresh-{i}' / 'mlflow.db'}"
        (tmp_path / f"fresh-{i}").mkdir()
        openers = [[sys.executable, "-c", OPENER, uri] for _ in range(3)]
        # the openers start first (as warm workers do), the training script right behind them
        results = _run_all([*openers, [sys.executable, "-c", TRAINING, uri]])
        failed = [text[-2000:] for code, text in results if code != 0]
        assert not failed, f"repeat {i}: {failed}"
        assert results[-1][1].strip().endswith("trained")
        run = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("training").experiment_id])[0]
        assert run.data.params == {"lr": "0.1"} and run.data.metrics == {"val_f1": 0.9}


def test_a_missing_store_is_waited_for_and_never_created(tmp_path: Path) -> None:
    db = tmp_path / "later" / "mlflow.db"
    uri = f"sqlite:///{db}"
    with pytest.raises(StoreNotReady, match="does not exist yet"):
        MlflowTracking.connect(uri, TagsRegistry())
    assert not db.exists() and not db.parent.exists()  # nothing created, not even the folder
    assert not store_state(uri).ready
    MlflowClient(uri).search_experiments()  # the training side creates it
    assert store_state(uri).ready
    assert MlflowTracking.connect(uri, TagsRegistry()).experiment_ids() == ["0"]


#: A writer killed inside a transaction (a worker SIGKILLed by the OOM killer mid-write): it changed a page, so
#: sqlite left a hot journal beside the database, waiting for the next connection to roll it back.
KILLED_WRITER = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size = 0")
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE experiments SET name = 'half-written' WHERE experiment_id = 0")
conn.execute("CREATE TABLE spill (x)")
conn.executemany("INSERT INTO spill VALUES (?)", [(os.urandom(512),) for _ in range(4000)])  # past the page cache
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_store_left_with_a_hot_journal_by_a_killed_writer_is_ready(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    MlflowClient(uri).search_experiments()  # the training side created it
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], timeout=120)
    assert killed.returncode == -9
    assert (tmp_path / "mlflow.db-journal").stat().st_size > 0  # hot: nobody rolled it back yet
    assert store_state(uri).ready, store_state(uri).why  # a read-only probe cannot roll it back; podium's does
    assert not (tmp_path / "mlflow.db-journal").exists() or (tmp_path / "mlflow.db-journal").stat().st_size == 0
    tracking = MlflowTracking.connect(uri, TagsRegistry())
    assert tracking.experiment_ids() == ["0"]
    assert MlflowClient(uri).get_experiment("0").name == "Default"  # the killed write was rolled back


def test_a_half_made_store_is_not_ready() -> None:
    assert not schema_state(None, False, "abc").ready
    assert "being migrated" in schema_state("old", True, "abc").why
    assert "Default experiment" in schema_state("abc", False, "abc").why
    assert schema_state("abc", True, "abc").ready


@pytest.mark.server
def test_workers_and_an_aggregator_started_before_the_store_exists_wait_for_it(tmp_path: Path) -> None:
    """Real `podium worker` (warm) and `podium aggregator` processes on a store that does not exist yet: they
    create nothing, the training script's first MLflow write succeeds, then they use the store it created."""
    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    pipeline = Pipeline(tmp_path, uri)
    try:
        workers = [pipeline.start(f"worker-{i}", "worker") for i in range(2)]
        agg = pipeline.start("aggregator", "aggregator")
        assert wait_until(lambda: "no MLflow store at" in agg.log(), 120), agg.log()
        assert wait_until(lambda: all("ready: warmed" in w.log() for w in workers), 180), workers[0].log()
        assert not db.exists()  # every podium process is up and waiting; none created the store
        trained = subprocess.run([sys.executable, "-c", TRAINING, uri], capture_output=True, text=True, timeout=240)
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert wait_until(lambda: "podium aggregator:" in agg.log(), 60), agg.log()
        assert agg.log().count("no MLflow store at") == 1  # one line while it waited, not one per look
        assert "MLflow store" in agg.log() and str(db) in agg.log()
        for w in workers:
            assert "alembic" not in w.log().lower() and "Traceback" not in w.log(), w.log()
            assert str(db) in w.log()  # the store each process uses is named at start
    finally:
        pipeline.stop()
