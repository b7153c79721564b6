"""`podium board`: the study page's server time for a study of 1,000 candidates, publish-to-page latency, and
50 open pages on one Redis subscription.

    .venv/bin/python bench/board.py [--trials 1000] [--updates 20] [--store bench/out/board] [--browser]

Generates (once, cached) a sqlite store with one study of --trials trials (trial + refit + one benchmark run
each), starts a real redis-server and a real `podium board` process on it, and publishes updates of that study
with the aggregator's own Publisher (its Lua script: SET, XADD, PUBLISH). Times, in one run:
  health       GET /api/health (the fixed cost of one request: the baseline)
  shell        GET /studies/{id} (the page's HTML)
  study        GET /api/studies/{id} (everything the page draws: 1,000 candidates, history, why); served from
               a per-study cache until its seq or candidates change, so also timed right after each update (built)
  sse          publish -> the update event read by a plain SSE client (a page's EventSource sees the same bytes)
  browser      publish -> the open page in Chromium shows the new seq (with --browser; Playwright's polling adds
               up to a frame); and -> its Pareto chart stars the update's new best (drawn from the update at
               once, before the candidates are read again)
  refreshed    publish -> the page told its candidates were read again from MLflow (the chart is current)
  fan-out 50   publish -> the last of 50 open event streams has it; and the Redis clients subscribed then
and prints Markdown tables with ratios to the baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from podium.aggregator.publisher import Publisher
from podium.coordination.embedded import free_port, redis_server_command
from podium.core.config import SelectionConfig
from podium.core.decision import Channel, update_of
from podium.core.state import select_all
from podium.core.tags import TagsRegistry
from podium.demo.synthetic_store import StoreSpec, generate_store, sqlite_uri
from podium.testing import Unfenced
from podium.tracking.tracker import MlflowTracking

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def timed_gets(port: int, path: str, repeat: int) -> tuple[float, float, int]:
    """(median ms, max ms, bytes) of ``repeat`` GETs."""
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        status, body = get(port, path)
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200, body[:300]
        size = len(body)
    return statistics.median(times), max(times), size


class Events(threading.Thread):
    """A plain SSE client on one study: the monotonic time each update (by seq) and each refresh arrived."""

    def __init__(self, port: int, study: str, after: int):
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.conn.request("GET", f"/api/events?study={study}&after={after}")
        self.response = self.conn.getresponse()
        self.updates: dict[int, float] = {}
        self.refreshed: list[float] = []
        self.ready = threading.Event()

    def run(self) -> None:
        kind = None
        try:
            while True:
                line = self.response.readline().decode()
                if not line:
                    return
                line = line.rstrip("\n")
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data = json.loads(line.split(":", 1)[1])
                    now = time.perf_counter()
                    if kind == "status":
                        self.ready.set()
                    elif kind == "update":
                        self.updates[data["seq"]] = now
                    elif kind == "refreshed":
                        self.refreshed.append(now)
        except OSError:
            return


def wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--updates", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--store", type=Path, default=Path("bench/out/board"))
    ap.add_argument("--browser", action="store_true", help="also time the page in Chromium (playwright)")
    args = ap.parse_args()
    folder = args.store / f"t{args.trials}"
    uri = sqlite_uri(folder)
    if not (folder / "done").exists():
        t0 = time.perf_counter()
        generate_store(uri, StoreSpec(studies=1, trials_per_study=args.trials, benchmarks_per_trial=1))
        (folder / "done").write_text("ok")
        print(f"generated the store in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    cfg = SelectionConfig()
    tracking = MlflowTracking.connect(uri, TagsRegistry())
    ids = tracking.experiment_ids()
    (selection,), _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), cfg)
    study, config_hash = selection.study_key_hash, selection.benchmark_config_hash
    candidates = len(selection.candidates) + len(selection.excluded)

    work = args.store / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rport, bport = free_port(), free_port()
    redis_proc = subprocess.Popen(
        redis_server_command(shutil.which("redis-server") or "redis-server", rport, work),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{rport}/0"
    r = redis.Redis.from_url(url, decode_responses=True)
    assert wait(lambda: _pings(r), 10), "redis-server did not start"
    env = {**os.environ, "PODIUM_CONFIG_DIR": str(REPO / "config"), "PODIUM_BOARD_TOKEN": ""}
    board = subprocess.Popen(
        [sys.executable, "-m", "podium", "board", "--port", str(bport), "--redis-url", url, "--tracking-uri", uri],
        stdout=open(work / "board.log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    publisher = Publisher(r, Unfenced(r))
    streams: list[Events] = []
    try:
        publisher.publish(
            update_of("first", selection, Channel(study, config_hash, cfg.selection.policy, cfg.benchmark.across_runs))
        )
        assert wait(lambda: _health(bport).get("selections", {}).get("loaded_at") is not None, 600), (
            work / "board.log"
        ).read_text()
        load_s = _health(bport)["selections"]["load_s"]

        pages = [
            ("health (baseline)", "/api/health"),
            ("page HTML /studies/{id}", f"/studies/{study}"),
            (f"study JSON /api/studies/{{id}} ({candidates} candidates)", f"/api/studies/{study}"),
        ]
        rows = [(name, *timed_gets(bport, path, args.repeat)) for name, path in pages]
        base = rows[0][1]

        events = Events(bport, study, after=1)
        events.start()
        assert events.ready.wait(30)
        sse, refreshed, built = [], [], []
        for _ in range(args.updates):
            before = time.perf_counter()
            update = publisher.publish(
                update_of(
                    "figures_changed",
                    selection,
                    Channel(study, config_hash, cfg.selection.policy, cfg.benchmark.across_runs),
                )
            )
            assert wait(lambda u=update: u.seq in events.updates, 30)
            sse.append((events.updates[update.seq] - before) * 1000)
            built.append(timed_gets(bport, f"/api/studies/{study}", 1)[0])  # a new seq: the document is built anew
            count = len(events.refreshed)
            assert wait(lambda c=count: len(events.refreshed) > c, 600)
            refreshed.append((events.refreshed[-1] - before) * 1000)

        browser = charted = None
        if args.browser and Path(CHROMIUM).exists():
            browser, charted = _browser_latency(bport, study, publisher, selection, cfg, min(args.updates, 10))

        for _ in range(50):
            s = Events(bport, study, after=publisher._seq[study])
            s.start()
            streams.append(s)
        assert all(s.ready.wait(60) for s in streams)
        subscribed = [c for c in r.client_list() if int(c.get("psub", 0)) + int(c.get("sub", 0)) > 0]
        fan = []
        for _ in range(5):
            before = time.perf_counter()
            update = publisher.publish(
                update_of(
                    "figures_changed",
                    selection,
                    Channel(study, config_hash, cfg.selection.policy, cfg.benchmark.across_runs),
                )
            )
            assert wait(lambda u=update: all(u.seq in s.updates for s in streams), 60)
            fan.append((max(s.updates[update.seq] for s in streams) - before) * 1000)
    finally:
        for proc in (board, redis_proc):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)

    load = os.getloadavg()
    print(f"store: 1 study, {args.trials} trials, {candidates} candidates; host load {load[0]:.1f} (1 min)\n")
    print("| request | median ms | max ms | bytes | ratio to health |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, median, worst, size in rows:
        print(f"| {name} | {median:.1f} | {worst:.1f} | {size} | {median / base:.1f}x |")
    print(
        f"| study JSON, first request after an update (built, not cached) | {statistics.median(built):.1f} | "
        f"{max(built):.1f} | {rows[2][3]} | {statistics.median(built) / base:.1f}x |"
    )
    print()
    print("| publish -> | median ms | max ms | n |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| update event on an open stream | {statistics.median(sse):.1f} | {max(sse):.1f} | {len(sse)} |")
    if browser:
        print(
            f"| new seq shown by the page in Chromium | {statistics.median(browser):.1f} | {max(browser):.1f} | "
            f"{len(browser)} |"
        )
        print(
            f"| a new best starred on the page's chart in Chromium | {statistics.median(charted):.1f} | "
            f"{max(charted):.1f} | {len(charted)} |"
        )
    print(f"| last of 50 open streams has it | {statistics.median(fan):.1f} | {max(fan):.1f} | {len(fan)} |")
    print(
        f"| candidates re-read from MLflow (chart current) | {statistics.median(refreshed):.0f} | "
        f"{max(refreshed):.0f} | {len(refreshed)} |"
    )
    print(
        f"\nselection load from MLflow at start: {load_s:.2f} s; Redis clients subscribed with 50 pages open: "
        f"{len(subscribed)}"
    )


def _pings(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False


def _health(port: int) -> dict:
    try:
        status, body = get(port, "/api/health")
    except OSError:
        return {}
    return json.loads(body) if status == 200 else {}


def _browser_latency(port, study, publisher, selection, cfg, count) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    args = [
        "--no-sandbox",
        "--headless",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    shown, charted = [], []
    # each update names another best than the store's (its second candidate): the chart must move its star
    # from the update alone; the re-read that follows puts the store's best back before the next one
    other = dataclasses.replace(selection, best=selection.candidates[1])
    channel = Channel(study, selection.benchmark_config_hash, cfg.selection.policy, cfg.benchmark.across_runs)
    chosen = f'svg.pareto polygon.chosen[data-trial="{other.best.trial_key_hash}"]'
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = b.new_page()
        page.on("pageerror", lambda e: print("page error:", e, file=sys.stderr))
        page.goto(f"http://127.0.0.1:{port}/studies/{study}")
        page.wait_for_selector('body[data-conn="live"]', timeout=60_000)
        page.wait_for_selector("svg.pareto", timeout=600_000)
        for _ in range(count):
            loads = page.evaluate("window.podiumBoard.loads")
            before = time.perf_counter()
            update = publisher.publish(update_of("new_best", other, channel))
            page.wait_for_function(f"window.podiumBoard.lastSeq >= {update.seq}", polling="raf", timeout=60_000)
            shown.append((time.perf_counter() - before) * 1000)
            page.wait_for_selector(chosen, timeout=60_000)
            charted.append((time.perf_counter() - before) * 1000)
            page.wait_for_function(f"window.podiumBoard.loads > {loads}", timeout=600_000)
            page.wait_for_selector(chosen, state="detached", timeout=60_000)
        b.close()
    return shown, charted


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks stop the servers
    main()
