"""What the board tests share: a `podium board` process beside a Pipeline, trial runs with hostile text, and a
plain Server-Sent Events reader."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from podium.coordination.embedded import free_port
from tests.pipeline_helpers import Pipeline
from tests.servers import ServerProcess, wait_ready

TOKEN = "s3cret-board-token"
#: Text a hostile or careless run carries: shown as text, never run as script or parsed as markup.
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@dataclass
class BoardProcess:
    process: ServerProcess
    url: str
    port: int

    def stop(self) -> None:
        self.process.stop()


def start_board(
    p: Pipeline,
    token: str | None = TOKEN,
    port: int | None = None,
    redis_url: str | None = None,
    name: str = "board",
    extra: tuple[str, ...] = (),
) -> BoardProcess:
    """``podium board`` as a process on a free port, with the pipeline's Redis and store, live once its feed is;
    ``extra``: more of its options."""
    port = port or free_port()
    args = ["board", "--port", str(port), *extra] + (["--redis-url", redis_url] if redis_url else [])
    proc = p.start(name, *args, env={"PODIUM_BOARD_TOKEN": token} if token else {"PODIUM_BOARD_TOKEN": ""})
    board = BoardProcess(proc, f"http://127.0.0.1:{port}", port)
    wait_ready(proc, lambda: get_json(board, "/api/health")[1].get("feed") == "live", "podium board", 60)
    return board


def request(board: BoardProcess, path: str, token: str | None = TOKEN, headers: dict | None = None):
    """(status, headers, body) of a GET, with the bearer token unless ``token`` is None."""
    conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=30)
    try:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        conn.request("GET", path, headers=sent)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def get_json(board: BoardProcess, path: str, token: str | None = TOKEN) -> tuple[int, dict]:
    status, _, body = request(board, path, token)
    return status, json.loads(body) if body else {}


class EventStream:
    """One open ``/api/events`` connection, read event by event."""

    def __init__(self, board: BoardProcess, query: str = "", last_event_id: int | None = None, timeout: float = 30):
        self.conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=timeout)
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", f"/api/events{query}", headers=headers)
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()

    def next(self) -> tuple[str, dict, str | None]:
        """The next event: (kind, data, id); comment lines and the retry line are skipped."""
        kind, data, event_id = "message", [], None
        while True:
            line = self.response.readline().decode()
            if line == "":
                raise EOFError("the board closed the event stream")
            line = line.rstrip("\n")
            if line == "":
                if data:
                    return kind, json.loads("\n".join(data)), event_id
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value

    def until(self, kind: str, predicate=lambda data: True, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, data, _ = self.next()
            if got == kind and predicate(data):
                return data
        pytest.fail(f"no {kind} event within {timeout} s")

    def close(self) -> None:
        self.conn.close()


def trial_with(store: str, study: str, trial: str, f1: float, backbone: str, study_name: str | None = None) -> str:
    """A FINISHED hpo_trial run as training writes it, with a backbone param and (optionally) a study tag."""
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("training")
    exp_id = exp.experiment_id if exp else client.create_experiment("training")
    tags = {"code.stage": "hpo_trial", "code.grouping.study_key_hash": study, "code.grouping.trial_key_hash": trial}
    run = client.create_run(exp_id, tags=tags)
    extra = [RunTag("study", study_name)] if study_name else []
    client.log_batch(
        run.info.run_id, metrics=[Metric("macro-f1", f1, 0, 0)], params=[Param("backbone", backbone)], tags=extra
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def with_load_levels(tracking, r, result, metrics: dict[str, float]) -> None:
    """Give a committed benchmark run (``committed_result(..., r=None)``) load-level metrics, then send its
    result event, so the aggregator's update (and the board's read that follows) sees them."""
    from podium.coordination import keys

    if metrics:
        tracking.client.log_batch(result.run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    r.xadd(keys.BENCHMARKS_STREAM, {"data": result.encode()})


#: A load benchmark's metrics (closed loop c1, c4; open loop r100) with its throughput at a p99 budget.
LOAD_METRICS = {
    "load_c1_throughput_per_s": 180.0,
    "load_c1_p50_ms": 5.0,
    "load_c1_p99_ms": 7.5,
    "load_c4_throughput_per_s": 600.0,
    "load_c4_p50_ms": 6.0,
    "load_c4_p99_ms": 11.0,
    "load_r100_throughput_per_s": 99.0,
    "load_r100_p50_ms": 5.1,
    "load_r100_p99_ms": 6.9,
    "load_r100_achieved_per_s": 99.5,
    "throughput_at_sla_per_s": 480.0,
}


def select_json(p: Pipeline, store: str, study: str) -> list[dict]:
    """``podium select --json``'s selections of ``study``, from a real process."""
    out = p.run_cli("select", "--json", "--tracking-uri", store)
    return [s for s in json.loads(out)["selections"] if s["study_key_hash"] == study]


def url_with_token(board: BoardProcess, path: str) -> str:
    parts = urlsplit(board.url + path)
    joiner = "&" if parts.query else "?"
    return f"{board.url}{path}{joiner}token={TOKEN}"
