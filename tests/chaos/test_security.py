"""Bad input and security with real processes: filter injection via the CLI, pickle refused by a real
worker, a password/ACL Redis URL whose secret never reaches logs or MLflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Producer
from mlflow import MlflowClient

from podium.coordination import keys
from podium.core.records import Champion
from podium.producers.enqueue import enqueue_benchmark
from podium.settings.env import redact_url
from tests.chaos.test_faults import synthetic
from tests.cli import podium_in_process
from tests.pipeline_helpers import Pipeline
from tests.servers import spawn, start_redis

pytestmark = [pytest.mark.chaos, pytest.mark.server]
INJECTIONS = ["x' OR '1'='1", "a b", "ü", "`x`", "x'--"]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    "command",
    [
        ["report", "--study"],
        ["enqueue", "--study"],
        ["backfill", "--study"],
        ["bench", "--no-log", "--run-id"],
        ["watch", "--study"],
    ],
)
def test_injection_through_cli_arguments_is_refused(store_uri: str, command: list[str], value: str) -> None:
    MlflowClient(store_uri).search_experiments()
    env = {"PODIUM_TRACKING_URI": store_uri, "PODIUM_REDIS_URL": "redis://127.0.0.1:1/0"}
    out = podium_in_process(*command, value, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "may only hold" in " ".join(out.stderr.split())


@pytest.fixture
def pipeline(tmp_path: Path, _migrated_db: Path):
    shutil.copy(_migrated_db, tmp_path / "mlflow.db")
    p = Pipeline(tmp_path / "p", f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        yield p
    finally:
        p.stop()


def test_pickled_and_non_json_messages_are_refused(pipeline: Pipeline) -> None:
    pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "INFO")
    pipeline.wait_workers(1)
    with Connection(pipeline.redis_server.url) as conn:
        producer = Producer(conn)
        exchange = Exchange(keys.queue("cpu"), type="direct")
        for body, serializer in (((["ls"], {}, {}), "pickle"), ("<xml/>", None)):
            headers = {
                "task": keys.BENCHMARK_TASK,
                "id": f"evil-{serializer}",
                "lang": "py",
                "argsrepr": "",
                "kwargsrepr": "",
                "origin": "attacker",
            }
            kwargs = (
                {"serializer": serializer}
                if serializer
                else {"content_type": "application/xml", "content_encoding": "utf-8"}
            )
            producer.publish(
                body, exchange=exchange, routing_key=keys.queue("cpu"), headers=headers, declare=[exchange], **kwargs
            )
    # the worker keeps serving: a good request after the bad ones is measured
    good = enqueue_benchmark(pipeline.app, Champion("g" * 32, "s" * 64, "t" * 64, "d", "e"), synthetic())
    assert pipeline.app.AsyncResult(good.task_id).get(timeout=120)["status"] == "measured"
    log = pipeline.processes["worker"].log()
    assert ("Refusing to deserialize" in log or "ContentDisallowed" in log) and "pickle" in log, log[-2000:]
    # A task that ran leaves its result (task_track_started writes STARTED first); the refused ones left none.
    assert pipeline.redis.exists(f"celery-task-meta-{good.task_id}") == 1
    assert pipeline.redis.exists("celery-task-meta-evil-pickle", "celery-task-meta-evil-None") == 0
    # both refused messages are parked (never decoded, never run) with the reason, the worker's own words
    letters = [f for _, f in pipeline.redis.xrange(keys.DEAD_LETTERS_STREAM)]
    assert sorted(json.loads(f["payload"])["headers"]["id"] for f in letters) == ["evil-None", "evil-pickle"]
    assert all("Refusing to deserialize" in f["error"] for f in letters), letters


def _benchmark_once(url: str, tmp_path: Path, migrated_db: Path) -> tuple[str, dict[str, str], str]:
    """A real `podium worker` on ``url`` measures one request sent by a producer on ``url``.
    Returns the MLflow store, the environment used, and the worker's log."""
    from podium.broker.app import create_app
    from podium.settings.env import PodiumSettings

    shutil.copy(migrated_db, tmp_path / "mlflow.db")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PODIUM_REDIS_URL": url, "PODIUM_TRACKING_URI": store, "PYTHONUNBUFFERED": "1"}
    (tmp_path / "w").mkdir()
    worker = spawn(
        [sys.executable, "-m", "podium", "worker", "--target", "cpu", "--loglevel", "INFO"], tmp_path / "w", env=env
    )
    try:
        app = create_app(PodiumSettings(redis_url=url, tracking_uri=store))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not app.control.ping(timeout=0.5):
            pass
        sent = enqueue_benchmark(app, Champion("a" * 32, "s" * 64, "t" * 64, "d", "e"), synthetic())
        assert app.AsyncResult(sent.task_id).get(timeout=120)["status"] == "measured", worker.log()
        app.close()
    finally:
        worker.stop()
    return store, env, worker.log()


def test_acl_user_and_password_work_and_stay_secret(tmp_path: Path, _migrated_db: Path) -> None:
    secret = "s3cret-Pa55"
    server = start_redis(
        tmp_path / "redis",
        extra=["--user", "default", "off", "--user", "podium", "on", f">{secret}", "~*", "&*", "+@all"],
    )
    try:
        url = f"redis://podium:{secret}@127.0.0.1:{server.port}/0"
        assert secret not in redact_url(url) and "***" in redact_url(url)
        store, env, worker_log = _benchmark_once(url, tmp_path, _migrated_db)
        status = subprocess.run(
            [sys.executable, "-m", "podium", "status"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "COLUMNS": "200"},
        )
        assert status.returncode == 0 and "***" in status.stdout and secret not in status.stdout
        assert secret not in worker_log
        client = MlflowClient(store)
        for run in client.search_runs([e.experiment_id for e in client.search_experiments()]):
            assert all(secret not in v for v in run.data.tags.values())
            assert all(secret not in str(v) for v in run.data.params.values())
    finally:
        server.stop()


def _certificates(folder: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run(["openssl", *a], cwd=folder, capture_output=True, check=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=podium-test-ca",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    )
    return {name: folder / f"{name}" for name in ("ca.crt", "server.crt", "server.key")}


def test_rediss_tls_everywhere(tmp_path: Path, _migrated_db: Path) -> None:
    import redis

    from tests.servers import free_port

    certs = _certificates(tmp_path / "tls")
    binary = shutil.which("redis-server")
    port = free_port()
    (tmp_path / "redis").mkdir()
    server = spawn(
        [
            binary,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--tls-cert-file",
            str(certs["server.crt"]),
            "--tls-key-file",
            str(certs["server.key"]),
            "--tls-ca-cert-file",
            str(certs["ca.crt"]),
            "--tls-auth-clients",
            "no",
            "--dir",
            str(tmp_path / "redis"),
        ],
        tmp_path / "redis",
    )
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={certs['ca.crt']}"
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.1)
        _store, env, _log = _benchmark_once(url, tmp_path, _migrated_db)
        status = subprocess.run(
            [sys.executable, "-m", "podium", "status", "--json"], capture_output=True, text=True, timeout=60, env=env
        )
        assert status.returncode == 0, status.stderr
        plain = subprocess.run(
            [sys.executable, "-m", "podium", "status"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "PODIUM_REDIS_URL": f"redis://127.0.0.1:{port}/0"},
        )
        assert plain.returncode == 2 and "cannot read podium's status" in plain.stderr  # no silent plaintext
    finally:
        server.stop()
