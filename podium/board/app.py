"""The board's ASGI app: three pages (one HTML shell each; the browser draws them from the JSON endpoints),
the JSON endpoints, the event stream, and the vendored script and style sheet. Read only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from podium.board import activity, views
from podium.board.auth import TokenGate
from podium.board.selections import Snapshot
from podium.board.service import Board
from podium.coordination.status import collect
from podium.core.messages import BestModelUpdate
from podium.core.prefixes import resolve
from podium.errors import PodiumError, UnknownStudy

STATIC = Path(__file__).resolve().parent / "static"
#: A comment line on an idle event stream this often, so proxies keep it and a gone page is noticed.
KEEPALIVE_S = 10.0
#: What an EventSource waits before it reconnects by itself (milliseconds).
RETRY_MS = 1000
PAGES = {"studies": "Studies", "study": "Study", "workers": "Workers"}


def create_app(board: Board, token: str | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        board.start()
        try:
            yield
        finally:
            await run_in_threadpool(board.stop)

    routes = [
        Route("/", _page("studies")),
        Route("/studies/{study}", _page("study")),
        Route("/workers", _page("workers")),
        Route("/api/health", health),
        Route("/api/studies", studies),
        Route("/api/studies/{study}", study),
        Route("/api/workers", workers),
        Route("/api/events", events),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.board = board
    app.state.shell = (STATIC / "board.html").read_text()
    app.state.studies = {}  # study -> (what it was built from, the study document as sent)
    app.add_middleware(TokenGate, token=token)
    return app


def _page(name: str):
    async def endpoint(request: Request) -> Response:
        html = request.app.state.shell.replace("{{page}}", name).replace("{{title}}", PAGES[name])
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return endpoint


async def health(request: Request) -> Response:
    board: Board = request.app.state.board
    return JSONResponse(
        {
            "feed": board.feed.state,
            "selections": _selections_state(board.cache.snapshot),
            "listeners": board.feed.listeners(),
        }
    )


async def studies(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_studies, request.app.state.board))


async def study(request: Request) -> Response:
    board: Board = request.app.state.board
    try:
        study_key = _resolve(board, request.path_params["study"])
    except PodiumError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    # the same document for every page until the study's seq, its candidates or the feed's state change
    snap = board.cache.snapshot
    key = (snap.loaded_at, snap.error, board.feed.seq(study_key), board.feed.state)
    cached = request.app.state.studies.get(study_key)
    if cached is None or cached[0] != key:
        body = await run_in_threadpool(lambda: JSONResponse(_study(board, study_key)).body)
        cached = request.app.state.studies[study_key] = (key, body)
    return Response(cached[1], media_type="application/json")


async def workers(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_workers, request.app.state.board))


async def events(request: Request) -> Response:
    board: Board = request.app.state.board
    study_key = request.query_params.get("study") or None
    if study_key is not None:
        try:
            study_key = _resolve(board, study_key)
        except PodiumError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
    after = _after(request)
    held = request.query_params.get("loaded")
    if after is None and study_key is not None:
        return JSONResponse(
            {"error": "a study's event stream needs the last seq seen: ?after=SEQ or the Last-Event-ID header"},
            status_code=400,
        )
    return StreamingResponse(
        _stream(board, request, study_key, after, held),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _loaded_at(raw: str) -> float | None:
    """``?loaded=``'s time (a document's ``selections.loaded_at``); None for empty (read before any load)."""
    try:
        return float(raw) if raw not in ("", "null") else None
    except ValueError:
        return None


def _after(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def _resolve(board: Board, prefix: str) -> str:
    known = board.feed.studies() | set(board.cache.snapshot.documents)
    study = resolve(prefix, known, "study")
    if study not in known:
        raise UnknownStudy(f"study {study[:12]}… has no published best and no benchmark run in the store")
    return study


def _selections_state(snap: Snapshot) -> dict[str, Any]:
    return {"loaded_at": snap.loaded_at, "load_s": snap.load_s, "error": snap.error}


def _studies(board: Board) -> dict[str, Any]:
    snap = board.cache.snapshot
    known = sorted(board.feed.studies() | set(snap.documents))
    problem = None
    try:
        flying = activity.in_flight_by_study(board.reads)
        dead = activity.dead_letters_by_study(board.reads, known)
    except redis.RedisError as exc:
        flying, dead, problem = None, None, f"Redis is not reachable: {exc}"
    rows = [
        views.study_row(
            s,
            board.feed.latest(s),
            snap.documents.get(s, []),
            None if flying is None else flying.get(s, 0),
            None if dead is None else dead.get(s, 0),
        )
        for s in known
    ]
    rows.sort(key=lambda r: -(r["last_change"] or 0))
    return {"studies": rows, "feed": board.feed.state, "redis_error": problem, "selections": _selections_state(snap)}


def _study(board: Board, study: str) -> dict[str, Any]:
    snap = board.cache.snapshot
    doc = views.study_document(
        study,
        board.feed.seq(study),
        board.feed.latest(study),
        board.feed.history(study),
        snap.documents.get(study, []),
        views.selection_config(snap.config),
        # the same snapshot as the candidates: a page compares it on ?loaded=, and draws over it the updates
        # after seq_read (their evidence may have reached the store after the read)
        _selections_state(snap) | {"seq_read": snap.seqs_read.get(study, 0)},
        snap.runs,
        snap.sla_p99_ms,
        board.mlflow_ui,
    )
    doc["feed"] = board.feed.state
    return doc


def _workers(board: Board) -> dict[str, Any]:
    try:
        report = collect(board.reads)
    except redis.RedisError as exc:
        return {"feed": board.feed.state, "redis_error": f"Redis is not reachable: {exc}", "at": time.time()}
    wanted = ("workers", "running", "in_flight", "queues", "cores", "stale_locks", "dead_letters", "at")
    return {"feed": board.feed.state, "redis_error": None, **{k: report.get(k) for k in wanted}}


def _event(kind: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _update_event(update: BestModelUpdate, with_id: bool) -> str:
    return _event("update", update.model_dump(mode="json"), update.seq if with_id else None)


async def _stream(
    board: Board, request: Request, study: str | None, after: int | None, held: str | None = None
) -> AsyncIterator[str]:
    """A page's events: ``status`` (the feed live or reconnecting), ``update`` (a BestModelUpdate; on a study's
    stream with ``id:`` = its seq), ``refreshed`` (the study's candidates were read again), ``reset`` (updates
    it missed are no longer kept: load the study again).

    ``held``: ``?loaded=``, the ``selections.loaded_at`` of the document the page read before it opened this stream
    (None: not sent, nothing compared). A re-read that ended in between sent its ``refreshed`` before this listener
    was there: the page is told now instead. The snapshot is looked at after the listener is added, and a re-read
    sets its snapshot before it tells the listeners, so every re-read reaches the page one way or the other (at
    worst both: one more read of the document)."""
    listener, backlog, lost = board.feed.listen(asyncio.get_running_loop(), study, after)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        yield _event("status", {"state": board.feed.state})
        if lost:
            yield _event("reset", {"study_key_hash": study})
        for update in backlog:
            yield _update_event(update, study is not None)
        if not lost and held is not None and _loaded_at(held) != board.cache.snapshot.loaded_at:
            yield _event("refreshed", {"study_key_hash": study})
        while True:
            try:
                kind, data = await asyncio.wait_for(listener.queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": keepalive\n\n"
                continue
            if kind == "update":
                yield _update_event(data, study is not None)
            elif kind == "status":
                yield _event("status", {"state": data})
            elif kind == "refreshed":
                yield _event("refreshed", {"study_key_hash": data})
    finally:
        board.feed.unlisten(listener)
