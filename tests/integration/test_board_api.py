"""`podium board`'s JSON endpoints and event stream, against a real redis-server, a real `podium aggregator`
process and a real MLflow sqlite store; the board runs as its own process under a Redis user that may only
read (so a write would fail loudly)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.board.app import KEEPALIVE_S
from podium.coordination import keys
from podium.core.tags import TagsRegistry
from podium.tracking.tracker import MlflowTracking
from tests.integration.board_fixtures import (
    LOAD_METRICS,
    TOKEN,
    EventStream,
    get_json,
    request,
    select_json,
    start_board,
    trial_with,
    with_load_levels,
)
from tests.pipeline_helpers import CONFIG, Pipeline, committed_result
from tests.servers import wait_until

pytestmark = pytest.mark.server
STUDY = "b0" * 32
TRIALS = {"1" * 64: 0.80, "2" * 64: 0.90}
#: The board's Redis user: reads, Pub/Sub, the INFO, CONFIG GET and TIME that `podium status` reads; no write.
READ_ONLY = ["on", ">boardpw", "~*", "&*", "+@read", "+@pubsub", "+@connection", "+info", "+config|get", "+time"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, _migrated_db: Path) -> str:
    folder = tmp_path_factory.mktemp("board-store")
    shutil.copy(_migrated_db, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, store: str):
    p = Pipeline(tmp_path_factory.mktemp("board-api"), store)
    try:
        p.redis.execute_command("ACL", "SETUSER", "board", *READ_ONLY)
        p.start("aggregator", "aggregator")
        tracking = MlflowTracking.connect(store, TagsRegistry())
        for i, (trial, f1) in enumerate(TRIALS.items()):
            trial_with(store, STUDY, trial, f1, f"net-{i}")
        # trial 1 first (the first best), then trial 2 (better on the objective: a new best; a load benchmark)
        for i, trial in enumerate(TRIALS, start=1):
            result = committed_result(tracking, None, STUDY, trial, 4.0 + i, champion_run=f"champion{i - 1}", fast=True)
            with_load_levels(tracking, p.redis, result, LOAD_METRICS if i == 2 else {})
            assert wait_until(lambda seq=i: _published_seq(p) >= seq, 120), p.processes["aggregator"].log()
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def board(pipeline: Pipeline):
    url = pipeline.redis_server.url.replace("redis://", "redis://board:boardpw@")
    b = start_board(pipeline, redis_url=url)
    try:
        assert wait_until(lambda: _selection_best(b) == "2" * 64, 120), b.process.log()
        yield b
    finally:
        b.stop()


def _published_seq(p: Pipeline) -> int:
    return int(p.redis.get(keys.sequence(STUDY)) or 0)


def _selection_best(board) -> str | None:
    status, doc = get_json(board, f"/api/studies/{STUDY}")
    if status != 200 or not doc["scopes"] or doc["scopes"][0]["selection"] is None:
        return None
    return doc["scopes"][0]["selection"]["best"]["trial_key_hash"]


PATHS = ["/", f"/studies/{STUDY}", "/workers", "/api/health", "/api/studies", f"/api/studies/{STUDY}", "/api/workers"]


@pytest.mark.parametrize("path", [*PATHS, "/api/events", "/static/board.js"])
def test_every_path_needs_the_token(board, path: str) -> None:
    assert request(board, path, token=None)[0] == 401
    assert request(board, path, token="wrong")[0] == 401


@pytest.mark.parametrize("path", PATHS)
def test_every_path_answers_with_the_token(board, path: str) -> None:
    status, headers, body = request(board, path)
    assert status == 200, body[:300]
    if path.startswith("/api/"):
        assert headers["content-type"] == "application/json"


def test_a_page_opened_with_the_token_once_sets_a_cookie_that_lets_the_browser_in(board) -> None:
    status, headers, _ = request(board, f"/studies/{STUDY}?token={TOKEN}", token=None)
    assert status == 303 and headers["location"] == f"/studies/{STUDY}"
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"]
    assert request(board, "/api/studies", token=None, headers={"Cookie": cookie})[0] == 200
    assert request(board, "/api/studies", token=None, headers={"Cookie": "podium_board_token=nope"})[0] == 401


def test_the_study_document_holds_exactly_what_podium_select_says(board, pipeline: Pipeline, store: str) -> None:
    status, doc = get_json(board, f"/api/studies/{STUDY[:10]}")  # a prefix names the study too
    assert status == 200
    (scope,) = doc["scopes"]
    assert scope["selection"] == select_json(pipeline, store, STUDY)[0]
    assert scope["benchmark_config_hash"] == CONFIG
    # the live update agrees with MLflow on the best, and carries why
    assert scope["update"]["best"]["trial_key_hash"] == "2" * 64
    assert scope["update"]["policy"] == doc["selection_config"]["policy"]
    assert doc["seq"] == _published_seq(pipeline) == 2
    assert [u["seq"] for u in doc["history"]] == [2, 1]
    assert [u["reason"] for u in doc["history"]] == ["new_best", "first"]


def test_the_study_document_says_which_updates_its_candidates_read_began_after(board, pipeline: Pipeline) -> None:
    """``selections.seq_read``: the study's last seq the board had taken when the read of the candidates began. A
    page draws the updates after it over the candidates (their best may not be in that read)."""
    seq = _published_seq(pipeline)

    def seq_read() -> int | None:
        status, doc = get_json(board, f"/api/studies/{STUDY}")
        return doc["selections"]["seq_read"] if status == 200 else None

    # a read begins once the feed has taken the study's updates (each one asks for a read)
    assert wait_until(lambda: seq_read() == seq, 60), board.process.log()
    _, studies = get_json(board, "/api/studies")
    assert "seq_read" not in studies["selections"]  # a study's own figure: only in its document


def test_a_load_benchmarks_curve_is_its_runs_metrics(board, store: str) -> None:
    _, doc = get_json(board, f"/api/studies/{STUDY}")
    (scope,) = doc["scopes"]
    (curve,) = scope["load"]["curves"]  # trial 1's run measured no load level: no curve
    assert curve["trial_key_hash"] == "2" * 64
    assert curve["benchmark_run_id"] == scope["selection"]["best"]["benchmark_run_id"]
    metrics = MlflowClient(store).get_run(curve["benchmark_run_id"]).data.metrics
    points = {f"load_{p['level']}_{k}": p[k] for p in curve["levels"] for k in p if k.endswith(("_s", "_ms"))}
    assert (
        points
        == {k: v for k, v in metrics.items() if k.startswith("load_")}
        == {k: v for k, v in LOAD_METRICS.items() if k.startswith("load_")}
    )
    assert [(p["level"], p["mode"]) for p in curve["levels"]] == [
        ("c1", "concurrency"),
        ("c4", "concurrency"),
        ("r100", "request_rate"),
    ]
    assert curve["throughput_at_sla_per_s"] == metrics["throughput_at_sla_per_s"]
    # a sqlite store and no --mlflow-ui: no UI, so no links and no budget from this board's benchmark.yaml
    assert (doc["mlflow_ui"], scope["links"], scope["load"]["sla_p99_ms"]) == (None, {}, None)


def test_the_studies_document_summarizes_each_study(board) -> None:
    status, doc = get_json(board, "/api/studies")
    assert status == 200
    (row,) = doc["studies"]
    assert row["study_key_hash"] == STUDY
    assert row["best"]["trial_key_hash"] == "2" * 64
    assert (row["seq"], row["reason"], row["candidates"], row["in_flight"], row["dead_letters"]) == (
        2,
        "new_best",
        2,
        0,
        0,
    )
    assert doc["feed"] == "live" and doc["redis_error"] is None


def test_an_unknown_study_is_a_404_that_says_so(board) -> None:
    status, doc = get_json(board, "/api/studies/" + "f" * 64)
    assert status == 404 and "study" in doc["error"]


def test_the_workers_document_reads_what_podium_status_reads(board, pipeline: Pipeline) -> None:
    status, doc = get_json(board, "/api/workers")
    assert status == 200
    assert {"workers", "running", "in_flight", "queues", "dead_letters"} <= set(doc)
    assert doc["redis_error"] is None


def test_the_event_stream_replays_what_a_page_missed_in_order_then_follows(board) -> None:
    everything = EventStream(board, f"?study={STUDY}&after=0")
    try:
        assert everything.until("status")["state"] == "live"
        first = [everything.next() for _ in range(2)]
        assert [(k, e) for k, _, e in first] == [("update", "1"), ("update", "2")]
        assert [d["seq"] for _, d, _ in first] == [1, 2]
    finally:
        everything.close()
    resumed = EventStream(board, f"?study={STUDY}&after=0", last_event_id=1)  # the header wins over ?after
    try:
        resumed.until("status")
        kind, data, event_id = resumed.next()
        assert (kind, data["seq"], event_id) == ("update", 2, "2")
    finally:
        resumed.close()


def test_a_stream_whose_page_holds_candidates_read_before_the_boards_last_read_is_told_at_once(board) -> None:
    # the page read its document, then the board read the candidates again, then the page's stream opened
    _, doc = get_json(board, f"/api/studies/{STUDY}")
    held = doc["selections"]["loaded_at"]
    for loaded in (held - 1, ""):  # an older read, or one before any
        # read with a timeout below the board's keepalive: a stream that says nothing fails here, not at the end
        stream = EventStream(board, f"?study={STUDY}&after={doc['seq']}&loaded={loaded}", timeout=KEEPALIVE_S - 2)
        try:
            assert stream.until("status")["state"] == "live"
            assert stream.next()[:2] == ("refreshed", {"study_key_hash": STUDY})
        finally:
            stream.close()


def test_a_study_stream_without_a_last_seq_is_refused_with_a_reason(board) -> None:
    status, doc = get_json(board, f"/api/events?study={STUDY}")
    assert status == 400 and "Last-Event-ID" in doc["error"]


def test_fifty_open_pages_cost_one_redis_subscription(board, pipeline: Pipeline, store: str) -> None:
    streams = []
    try:
        for _ in range(50):
            s = EventStream(board, f"?study={STUDY}&after=2")
            s.until("status")
            streams.append(s)
        assert wait_until(lambda: get_json(board, "/api/health")[1]["listeners"] >= 50, 30)
        r = pipeline.redis
        assert r.execute_command("PUBSUB", "NUMPAT") == 1
        subscribed = [c for c in r.client_list() if int(c.get("psub", 0)) + int(c.get("sub", 0)) > 0]
        assert len(subscribed) == 1 and subscribed[0]["user"] == "board", subscribed
        # one new update reaches every page
        tracking = MlflowTracking.connect(store, TagsRegistry())
        committed_result(tracking, r, STUDY, "2" * 64, 6.0, champion_run="champion1", fast=True)
        seqs = {s.until("update")["seq"] for s in streams}
        assert seqs == {3}
    finally:
        for s in streams:
            s.close()


def test_the_board_never_writes_to_redis(board, pipeline: Pipeline) -> None:
    """Its Redis user may not write: every command it sent succeeded (no NOPERM in the ACL log)."""
    denied = [e for e in pipeline.redis.execute_command("ACL", "LOG") if _field(e, "username") == "board"]
    assert denied == []
    with socket.create_connection(("127.0.0.1", pipeline.redis_server.port)) as s:  # the user really is read-only
        s.sendall(b"AUTH board boardpw\r\nSET podium:x 1\r\n")
        assert b"NOPERM" in _read_until(s, b"NOPERM")


def _field(entry, name: str):
    if isinstance(entry, dict):
        return entry.get(name)
    pairs = dict(zip(entry[::2], entry[1::2], strict=False))
    return pairs.get(name)


def _read_until(s: socket.socket, marker: bytes) -> bytes:
    s.settimeout(10)
    data = b""
    while marker not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
