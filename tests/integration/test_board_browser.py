"""The board in a real browser (the distribution's Chromium, driven by pytest-playwright; no browser download): a real
`podium worker` (synthetic backend) and `podium aggregator` feed it through a real redis-server (append-only, so
it can restart) and a real MLflow sqlite store. Every wait is on the page's state, with a deadline as a guard."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from mlflow import MlflowClient

from podium.aggregator.publisher import Publisher
from podium.coordination import keys
from podium.core.messages import BestModelUpdate
from podium.core.records import Champion
from podium.core.tags import TagsRegistry
from podium.producers.enqueue import enqueue_benchmark
from podium.testing import Unfenced
from podium.tracking.tracker import MlflowTracking
from tests.integration.board_fixtures import (
    HOSTILE,
    LOAD_METRICS,
    TOKEN,
    BoardProcess,
    get_json,
    select_json,
    start_board,
    trial_with,
    url_with_token,
    with_load_levels,
)
from tests.pipeline_helpers import CONFIG, Pipeline, committed_result, synthetic_config
from tests.servers import unavailable, wait_until

pytestmark = pytest.mark.server
STUDY = "d0" * 32
#: The study the new-best test measures alone: its page holds only what that test made, whichever ran before.
FOLLOWED = "f0" * 32
AWAITED = "a0" * 32  # a study whose page is open before its first result
PENDING = "e1" * 32  # a study sent an update naming a best its store does not hold
NEWCOMER = "9" * 64
TRIAL_A, TRIAL_B, TRIAL_C, TRIAL_D = "a" * 64, "b" * 64, "c" * 64, "e" * 64
#: The MLflow UI the board links runs to (``--mlflow-ui``): its path is percent-encoded into each link.
MLFLOW_UI = 'http://mlflow.test:5000/ui"><b id=x>'
UI_BASE = "http://mlflow.test:5000/ui%22%3E%3Cb%20id=x%3E"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Guards on waits for the page's state (milliseconds): a worker measures, the aggregator publishes, MLflow is read.
WAIT_MS = 120_000


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """pytest-playwright's browser, launched from the distribution's Chromium (no browser download)."""
    if not Path(CHROMIUM).exists():
        unavailable("chromium is not installed (apt-get install -y chromium)")
    return {"executable_path": CHROMIUM, "args": ARGS}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, _migrated_db: Path) -> str:
    folder = tmp_path_factory.mktemp("board-browser-store")
    shutil.copy(_migrated_db, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, store: str):
    p = Pipeline(tmp_path_factory.mktemp("board-browser"), store, redis_args=["--appendonly", "yes"])
    try:
        p.start("worker", "worker", "--target", "cpu", "--loglevel", "WARNING")
        p.start("aggregator", "aggregator")
        p.wait_workers(1)
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def board(pipeline: Pipeline):
    b = start_board(pipeline, extra=("--mlflow-ui", MLFLOW_UI))
    yield b
    b.stop()


def local(url: str) -> bool:
    """A request the board may make: to itself, or a data: URL (its empty favicon)."""
    parts = urlsplit(url)
    return parts.scheme == "data" or parts.hostname == "127.0.0.1"


@pytest.fixture
def page(page):
    """pytest-playwright's page (a new context per test); a script error on it, or a request for anything
    outside 127.0.0.1 (a CDN: the board must work offline), fails the test."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: local(r.url) or errors.append(f"requested {r.url}"))
    yield page
    assert errors == [], errors


def measure(p: Pipeline, store: str, trial: str, f1: float, backbone: str, study_name: str, study: str = STUDY) -> None:
    """A trial run as training writes it, benchmarked by the real worker: its result reaches the aggregator."""
    run_id = trial_with(store, study, trial, f1, backbone, study_name)
    sent = enqueue_benchmark(p.app, Champion(run_id, study, trial, "d", "e"), synthetic_config(service_ms=1.0))
    result = p.app.AsyncResult(sent.task_id).get(timeout=180)
    assert result["status"] == "measured", result


def with_trial_a(p: Pipeline, store: str) -> None:
    """TRIAL_A's trial measured and published once per module, whichever test comes first (xdist orders them)."""
    client = MlflowClient(store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    mine = f"tags.`code.grouping.study_key_hash` = '{STUDY}' AND tags.`code.grouping.trial_key_hash` = '{TRIAL_A}'"
    if not client.search_runs(experiments, mine, max_results=1):
        before = published_seq(p)
        measure(p, store, TRIAL_A, 0.80, "net-a", "board-study")
        assert wait_until(lambda: published_seq(p) > before, 120)


def published_seq(p: Pipeline, study: str = STUDY) -> int:
    return int(p.redis.get(keys.sequence(study)) or 0)


def stream_seqs(p: Pipeline, study: str = STUDY) -> list[int]:
    import json

    return [
        json.loads(f["data"])["seq"]
        for _, f in p.redis.xrange(keys.BEST_UPDATES_STREAM)
        if json.loads(f["data"])["study_key_hash"] == study
    ]


def open_study(page, board: BoardProcess, study: str = STUDY) -> None:
    page.goto(url_with_token(board, f"/studies/{study}"))
    page.wait_for_selector('body[data-conn="live"]', timeout=WAIT_MS)


def chart_points(page) -> list[tuple[str, float, float]]:
    drawn = page.eval_on_selector_all(
        "svg circle.point", "els => els.map(e => [e.dataset.trial, Number(e.dataset.x), Number(e.dataset.y)])"
    )
    return sorted(tuple(point) for point in drawn)


def test_the_study_page_follows_a_new_best_and_its_chart_is_podium_select(
    page, board: BoardProcess, pipeline: Pipeline, store: str
) -> None:
    measure(pipeline, store, TRIAL_A, 0.80, "net-a", "board-study", FOLLOWED)
    assert wait_until(lambda: published_seq(pipeline, FOLLOWED) >= 1, 120), pipeline.processes["aggregator"].log()
    open_study(page, board, FOLLOWED)
    page.wait_for_selector(f'.scope .best[data-trial="{TRIAL_A}"]', timeout=WAIT_MS)
    page.wait_for_selector(f'svg polygon.chosen[data-trial="{TRIAL_A}"]', timeout=WAIT_MS)
    seen = page.evaluate("window.podiumBoard.lastSeq")

    # a better trial is measured while the page is open: the new best reaches it, and the chart follows
    measure(pipeline, store, TRIAL_B, 0.95, HOSTILE, HOSTILE, FOLLOWED)
    page.wait_for_function(f"window.podiumBoard.lastSeq > {seen}", timeout=WAIT_MS)
    page.wait_for_selector(f'.scope .best[data-trial="{TRIAL_B}"]', timeout=WAIT_MS)
    page.wait_for_selector(f'svg polygon.chosen[data-trial="{TRIAL_B}"]', timeout=WAIT_MS)
    page.wait_for_function("document.querySelectorAll('svg circle.point').length === 2", timeout=WAIT_MS)
    page.wait_for_selector("svg.pareto circle.point.pending", state="detached", timeout=WAIT_MS)

    (selection,) = select_json(pipeline, store, FOLLOWED)
    expected = sorted(
        (c["trial_key_hash"], c["latency_ms"], c["f1_score"]) for c in selection["candidates"] + selection["excluded"]
    )
    assert chart_points(page) == expected
    assert selection["best"]["trial_key_hash"] == TRIAL_B
    history = page.eval_on_selector_all("table.history tr[data-seq]", "rows => rows.map(r => Number(r.dataset.seq))")
    assert history == sorted(stream_seqs(pipeline, FOLLOWED), reverse=True)

    # what MLflow holds is shown as text: no script ran, no element was made of it
    assert page.evaluate("window.__pwned") is None
    scripts = page.eval_on_selector_all("script", "all => all.map(s => s.getAttribute('src'))")
    assert scripts == ["/static/charts.js", "/static/board.js"] and page.locator("main img").count() == 0
    assert page.locator("td.backbone", has_text=HOSTILE).count() == 1
    assert HOSTILE in page.locator("h1").inner_text()


def test_the_chart_stars_a_new_best_from_the_update_before_the_candidates_are_read_again(
    page, board: BoardProcess, pipeline: Pipeline, store: str
) -> None:
    """An update carries its best's figures, so the chart moves its star at once, not after the board has read
    the store again (seconds on a large one). Here the update names a best the store does not hold: the page can
    only have drawn it from the update, as a pending point, which the next read of the candidates takes away."""
    tracking = MlflowTracking.connect(store, TagsRegistry())
    trial_with(store, PENDING, TRIAL_A, 0.70, "net-a", "pending-study")
    committed_result(tracking, pipeline.redis, PENDING, TRIAL_A, 2.0, champion_run="pending", fast=True)
    assert wait_until(lambda: published_seq(pipeline, PENDING) >= 1, 120), pipeline.processes["aggregator"].log()
    open_study(page, board, PENDING)
    page.wait_for_selector(f'svg.pareto polygon.chosen[data-trial="{TRIAL_A}"]', timeout=WAIT_MS)
    loads = page.evaluate("window.podiumBoard.loads")
    # what the chart showed the moment the update was applied (a later re-read may redraw it at any time)
    page.evaluate(
        """newcomer => new MutationObserver((_, seen) => {
            const star = document.querySelector(`svg.pareto polygon.chosen[data-trial="${newcomer}"]`);
            const point = document.querySelector(`svg.pareto circle.point[data-trial="${newcomer}"]`);
            if (star && !window.starred) window.starred = { point: point && point.getAttribute("class") };
        }).observe(document.getElementById("main"), { childList: true, subtree: true })""",
        NEWCOMER,
    )
    latest = BestModelUpdate.model_validate_json(pipeline.redis.get(keys.best_latest(PENDING, CONFIG)))
    assert latest.best is not None
    newcomer = latest.best.model_copy(update={"trial_key_hash": NEWCOMER, "f1_score": 0.9, "latency_ms": 1.0})
    update = Publisher(pipeline.redis, Unfenced(pipeline.redis)).publish(
        latest.model_copy(update={"reason": "new_best", "best": newcomer})
    )
    page.wait_for_function("window.starred", timeout=WAIT_MS)
    assert page.evaluate("window.starred") == {"point": "point pending"}
    assert page.evaluate("window.podiumBoard.lastSeq") >= update.seq
    # the next read of the candidates draws what the store holds: the pending point is gone
    page.wait_for_function(f"window.podiumBoard.loads > {loads}", timeout=WAIT_MS)
    page.wait_for_selector("svg.pareto circle.point.pending", state="detached", timeout=WAIT_MS)
    assert chart_points(page) == [(TRIAL_A, 2.0, 0.70)]


def test_a_page_opened_before_the_studys_first_result_waits_and_then_follows_it(
    page, board: BoardProcess, pipeline: Pipeline, store: str
) -> None:
    page.goto(url_with_token(board, f"/studies/{AWAITED}"))
    page.wait_for_selector("#waiting", timeout=WAIT_MS)  # told it is waiting, not left with an error
    measure(pipeline, store, TRIAL_A, 0.70, "net-a", "awaited-study", AWAITED)
    page.wait_for_selector(f'.scope .best[data-trial="{TRIAL_A}"]', timeout=WAIT_MS)
    page.wait_for_selector('body[data-conn="live"]', timeout=WAIT_MS)


def test_the_load_curves_are_drawn_and_the_runs_link_to_the_mlflow_ui(
    page, board: BoardProcess, pipeline: Pipeline, store: str
) -> None:
    trial_run = trial_with(store, STUDY, TRIAL_C, 0.70, "net-c")
    tracking = MlflowTracking.connect(store, TagsRegistry())
    result = committed_result(tracking, None, STUDY, TRIAL_C, 1.5, champion_run="loaded", fast=True)
    before = published_seq(pipeline)
    with_load_levels(tracking, pipeline.redis, result, LOAD_METRICS)
    # the board knows the study before the page asks for it (run first in its process, the study is new)
    assert wait_until(lambda: published_seq(pipeline) > before, 120), pipeline.processes["aggregator"].log()
    assert wait_until(lambda: board_seq(board) == published_seq(pipeline), 60), board.process.log()
    open_study(page, board)
    curve = f'svg.load polyline.curve.p99[data-run="{result.run_id}"]'
    page.wait_for_selector(curve, timeout=WAIT_MS)
    drawn = page.eval_on_selector_all(curve, "els => els.map(e => [e.dataset.mode, e.dataset.x, e.dataset.y])")
    assert sorted(drawn) == [["concurrency", "180 600", "7.5 11"], ["request_rate", "99", "6.9"]]
    assert page.locator(f'svg.load polyline.curve.p50[data-run="{result.run_id}"]').count() == 2
    assert page.locator(f'svg.load polygon.at-sla[data-run="{result.run_id}"]').get_attribute("data-x") == "480"

    experiment = MlflowClient(store).get_run(result.run_id).info.experiment_id
    trial_experiment = MlflowClient(store).get_run(trial_run).info.experiment_id
    links = dict(page.eval_on_selector_all("a.run-link", "as => as.map(a => [a.dataset.run, a.getAttribute('href')])"))
    assert links[result.run_id] == f"{UI_BASE}/#/experiments/{experiment}/runs/{result.run_id}"
    assert links[trial_run] == f"{UI_BASE}/#/experiments/{trial_experiment}/runs/{trial_run}"
    assert page.locator("main b").count() == 0  # the address is an attribute, never markup


def test_candidates_read_again_between_a_pages_document_and_its_event_stream_still_reach_the_page(
    page, board: BoardProcess, pipeline: Pipeline, store: str
) -> None:
    """A page reads its study's document, then opens its event stream. The board's re-read of the candidates that
    an update starts can end between the two, its ``refreshed`` event sent before the page listens. The page must
    still get what was re-read (here: a new candidate's load curve), or it shows stale evidence for good."""
    with_trial_a(pipeline, store)
    assert wait_until(lambda: read_again_since(board, last_update(pipeline)["published_at"]), 120)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    trial_with(store, STUDY, TRIAL_D, 0.60, "net-d")
    result = committed_result(tracking, None, STUDY, TRIAL_D, 1.7, champion_run="between", fast=True)
    curve = f'svg.load polyline.curve.p99[data-run="{result.run_id}"]'

    def read_again_first(route) -> None:
        # the page holds its document and opens its stream: the evidence lands, is published and re-read first
        before = published_seq(pipeline)
        with_load_levels(tracking, pipeline.redis, result, LOAD_METRICS)
        assert wait_until(lambda: published_seq(pipeline) > before, 120), pipeline.processes["aggregator"].log()
        published_at = last_update(pipeline)["published_at"]
        assert wait_until(lambda: read_again_since(board, published_at), 120), board.process.log()
        route.continue_()

    page.route("**/api/events?*", read_again_first, times=1)
    open_study(page, board)
    page.wait_for_selector(curve, timeout=WAIT_MS)


def last_update(p: Pipeline) -> dict:
    """The study's newest update on the durable stream."""
    import json

    updates = [json.loads(f["data"]) for _, f in p.redis.xrange(keys.BEST_UPDATES_STREAM)]
    return [u for u in updates if u["study_key_hash"] == STUDY][-1]


def board_seq(board: BoardProcess) -> int:
    """The study's seq as the board's document says (0 while the board knows no update of it)."""
    status, doc = get_json(board, f"/api/studies/{STUDY}")
    return doc["seq"] if status == 200 else 0


def read_again_since(board: BoardProcess, published_at: float) -> bool:
    """Has the board finished a read of the candidates that began after an update published at ``published_at``?"""
    selections = get_json(board, "/api/health")[1]["selections"]
    return selections["loaded_at"] is not None and selections["loaded_at"] - selections["load_s"] > published_at


def test_a_redis_restart_shows_reconnecting_then_resumes_without_a_missed_seq(
    page, board: BoardProcess, pipeline: Pipeline, store: str
) -> None:
    with_trial_a(pipeline, store)
    open_study(page, board)
    first = page.evaluate("window.podiumBoard.lastSeq")
    assert first == published_seq(pipeline)

    pipeline.restart_redis(between=lambda: page.wait_for_selector('body[data-conn="reconnecting"]', timeout=WAIT_MS))
    page.wait_for_selector('body[data-conn="live"]', timeout=WAIT_MS)

    tracking = MlflowTracking.connect(store, TagsRegistry())
    committed_result(tracking, pipeline.redis, STUDY, TRIAL_A, 3.0, champion_run="restart", fast=True)
    page.wait_for_function(f"window.podiumBoard.lastSeq > {first}", timeout=WAIT_MS)
    assert wait_until(lambda: published_seq(pipeline) > first, 60)
    last = published_seq(pipeline)
    page.wait_for_function(f"window.podiumBoard.lastSeq === {last}", timeout=WAIT_MS)
    assert page.evaluate("window.podiumBoard.seqs") == [s for s in stream_seqs(pipeline) if s > first]
    assert page.evaluate("window.podiumBoard.seqs") == list(range(first + 1, last + 1))


def test_a_page_that_lost_the_board_gets_what_it_missed_when_the_board_is_back(
    page, board: BoardProcess, pipeline: Pipeline, store: str
) -> None:
    with_trial_a(pipeline, store)
    open_study(page, board)
    first = page.evaluate("window.podiumBoard.lastSeq")
    board.stop()
    page.wait_for_selector('body[data-conn="reconnecting"]', timeout=WAIT_MS)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    committed_result(tracking, pipeline.redis, STUDY, TRIAL_A, 2.5, champion_run="away", fast=True)
    assert wait_until(lambda: published_seq(pipeline) > first, 60), pipeline.processes["aggregator"].log()
    missed = published_seq(pipeline)
    back = start_board(pipeline, port=board.port, name="board-again", extra=("--mlflow-ui", MLFLOW_UI))
    board.process = back.process  # the module's fixture stops this one
    page.wait_for_function(f"window.podiumBoard.lastSeq === {missed}", timeout=WAIT_MS)
    page.wait_for_selector('body[data-conn="live"]', timeout=WAIT_MS)
    assert page.evaluate("window.podiumBoard.seqs") == list(range(first + 1, missed + 1))


def test_the_board_refuses_a_browser_without_the_token(browser, board: BoardProcess) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(f"{board.url}/studies/{STUDY}")
        assert response.status == 401
        assert "token" in page.locator("body").inner_text()
        response = page.goto(f"{board.url}/studies/{STUDY}?token=not-{TOKEN}")
        assert response.status == 401
    finally:
        context.close()


def test_the_workers_page_lists_the_ready_worker(page, board: BoardProcess, pipeline: Pipeline) -> None:
    (name,) = [pipeline.redis.hget(k, "name") for k in pipeline.redis.scan_iter(match=keys.WORKER_PATTERN)]
    page.goto(url_with_token(board, "/workers"))
    page.wait_for_selector(f'td:text-is("{name}")', timeout=WAIT_MS)
    assert page.locator("body").get_attribute("data-conn") == "live"
