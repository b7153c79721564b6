"""Load levels (perf_analyzer's ``--concurrency-range`` and ``--request-rate-range``): throughput and latency with
several requests in flight.

Closed loop (``c{N}``): N threads, each with its own sender (its own connection), sends its next request when its
last one returns. Open loop (``r{R}``): requests are sent at Poisson arrival times, by as many threads as may be
in flight (``max_in_flight``); latency is counted from the actual send, and how late sends were is reported.

The load runs without pause for the whole level: after warm-up (``warmup_iterations`` completions, at least one
per slot), windows of ``iterations`` completions follow until the last ``agree_windows`` agree on p50, p99 and
throughput (perf_analyzer's rule) or ``max_windows`` were made (then flagged ``unstable``). A closed-loop window
is the requests completed between two marks; an open-loop window is one pass over the same seeded arrival gaps
(``iterations`` of them, scaled to last exactly ``iterations / R`` seconds), so windows differ only by what the
host and the server did, never by the arrivals drawn. The server's statistics are diffed from the first window's
start to the end of the level (every request then answered).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from podium.backends.base import InferenceBackend, ServerStats
from podium.core.config import BenchmarkingSection
from podium.core.stats import LatencySummary, quality_flags, summarize, windows_agree
from podium.errors import BackendError
from podium.measurement.load_clients import Sender

#: How often the coordinating thread looks at the completions (s); the senders never wait on it.
POLL_S = 0.005
#: An open-loop request sent later than this after its arrival time counts as late (ns).
LATE_NS = 1_000_000


@dataclass(frozen=True)
class Record:
    """One request: its arrival time (open loop; else its send), send and return (perf_counter ns), the
    sending thread's CPU time for it (ns), and its index (open loop: arrival number)."""

    index: int
    due: int
    sent: int
    done: int
    cpu_ns: int


@dataclass(frozen=True)
class LevelResult:
    level: str  # c4, r100
    mode: str  # concurrency | request_rate
    asked: float  # N in flight, or requests per second
    summary: LatencySummary  # over the reported windows
    windows: list[LatencySummary]
    stable: bool
    flags: list[str]
    #: Open loop: requests sent per second over the reported windows, and the share sent late.
    achieved_per_s: float | None = None
    late_share: float | None = None
    #: Every request after warm-up (the tail past the last window included): mean latency and sender CPU.
    mean_ms: float = 0.0
    client_cpu_ms: float = 0.0
    requests: int = 0
    server: tuple[float, float, float] | None = None  # queue, compute, client overhead (ms per request)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "mode": self.mode,
            "asked": self.asked,
            **self.summary.as_dict(),
            "stable": self.stable,
            "flags": self.flags,
            "client_cpu_ms": self.client_cpu_ms,
            "requests_after_warmup": self.requests,
            "windows": [
                {"p50_ms": w.p50_ms, "p99_ms": w.p99_ms, "throughput_per_s": w.throughput_per_s, "count": w.count}
                for w in self.windows
            ],
        }
        if self.achieved_per_s is not None:
            entry |= {"achieved_per_s": self.achieved_per_s, "late_share": self.late_share}
        if self.server:
            entry["server"] = dict(zip(("queue_ms", "compute_ms", "client_overhead_ms"), self.server, strict=True))
        return entry


class _Run:
    """The threads of one level and what they recorded (each thread appends to its own list)."""

    def __init__(
        self, senders: Sequence[Sender], next_due: Callable[[], tuple[int, int] | None] | None, stall_s: float = 60.0
    ):
        self.stall_s = stall_s
        self.senders = senders
        self.next_due = next_due
        self.stop = threading.Event()
        self.records: list[list[Record]] = [[] for _ in senders]
        self.errors: list[BaseException] = []
        self.cursors = [0] * len(senders)
        self.threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(len(senders))]

    def _work(self, i: int) -> None:
        send, out, stop = self.senders[i], self.records[i], self.stop
        clock, cpu = time.perf_counter_ns, time.thread_time_ns
        count = 0
        try:
            while not stop.is_set():
                if self.next_due is None:
                    index, due = count, 0
                else:
                    arrival = self.next_due()
                    if arrival is None:
                        return
                    index, due = arrival
                    wait = due - clock()
                    if wait > 0 and stop.wait(wait / 1e9):
                        return
                c0 = cpu()
                t0 = clock()
                send()
                t1 = clock()
                out.append(Record(index, due or t0, t0, t1, cpu() - c0))
                count += 1
        except BaseException as exc:  # handed to the coordinating thread, which raises it
            self.errors.append(exc)
            stop.set()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def completed(self) -> int:
        return sum(len(r) for r in self.records)

    def check(self) -> None:
        if self.errors:
            self.finish()
            err = self.errors[0]
            raise err if isinstance(err, BackendError) else BackendError(f"a load request failed: {err}") from err

    def wait_for(self, count: Callable[[], bool]) -> None:
        last, since = self.completed(), time.monotonic()
        while not count():
            self.check()
            if not any(t.is_alive() for t in self.threads):
                raise BackendError("every load thread stopped before the level was measured")
            now, done = time.monotonic(), self.completed()
            if done != last:
                last, since = done, now
            elif now - since > self.stall_s:
                self.finish()
                raise BackendError(
                    f"no load request completed for {self.stall_s:g} s: the server or model stopped answering"
                )
            time.sleep(POLL_S)
        self.check()

    def collect(self) -> list[Record]:
        """The records appended since the last call (each thread's list read up to its length now)."""
        new: list[Record] = []
        for i, rs in enumerate(self.records):
            n = len(rs)
            if n > self.cursors[i]:
                new.extend(rs[self.cursors[i] : n])
                self.cursors[i] = n
        return new

    def all_records(self) -> list[Record]:
        return [r for rs in self.records for r in rs]


def _completed(run: _Run, target: int) -> Callable[[], bool]:
    """True once ``target`` requests of the run have completed."""
    return lambda: run.completed() >= target


def poisson_gaps(rate: float, count: int, seed: int) -> list[int]:
    """``count`` exponential gaps (ns) at ``rate`` per second, scaled so that they last exactly ``count / rate``
    seconds: a window of them sends at the asked rate when nothing is late."""
    rng = random.Random(seed)
    gaps = [rng.expovariate(rate) for _ in range(count)]
    scale = count / rate / sum(gaps)
    return [max(1, round(g * scale * 1e9)) for g in gaps]


def run_level(
    senders: Sequence[Sender],
    batch_size: int,
    cfg: BenchmarkingSection,
    *,
    rate: float | None = None,
    level: str = "",
    snapshot: Callable[[], ServerStats | None] = lambda: None,
    finish_snapshot: Callable[[int], ServerStats | None] | None = None,
) -> LevelResult:
    """Measure one level: closed loop over ``senders`` (one thread each), or open loop at ``rate`` requests per
    second sent by them. ``snapshot`` reads the server's statistics at the first window's start;
    ``finish_snapshot(requests)`` at the end, told how many requests the level sent in all."""
    rules = cfg.stability
    length = max(cfg.iterations, 1)
    warm = max(cfg.warmup_iterations, len(senders))
    next_due = None
    gaps: list[int] = []
    if rate is not None:
        gaps = poisson_gaps(rate, length, cfg.seed)
        lock, state = threading.Lock(), {"k": 0, "t": 0}

        def next_due() -> tuple[int, int] | None:
            with lock:
                k = state["k"]
                state["k"] = k + 1
                if k < warm:  # warm-up: at the asked rate too, from the same gaps
                    state["t"] += gaps[k % length]
                    return -1 - k, state["t"]
                state["t"] += gaps[(k - warm) % length]
                return k - warm, state["t"]

        state["t"] = time.perf_counter_ns()
    # a request past its timeout fails on its own; this catches a level that stops making progress at all
    run = _Run(senders, next_due, stall_s=2 * cfg.request_timeout_s + 5)
    run.start()
    windows: list[tuple[list[Record], int, int]] = []  # (records, start, end)
    summaries: list[LatencySummary] = []
    try:
        run.wait_for(lambda: run.completed() >= warm)
        start = began = time.perf_counter_ns()
        before = snapshot()
        # closed loop: what completes from now on; open loop: every arrival after the warm-up ones (index >= 0)
        pending = [r for r in run.collect() if (r.done >= start if rate is None else r.index >= 0)]
        for w in range(rules.max_windows):
            if rate is None:
                target = run.completed() + length
                run.wait_for(_completed(run, target))
                end = time.perf_counter_ns()
                pending += run.collect()
                got = [r for r in pending if r.done < end]
                pending = [r for r in pending if r.done >= end]
                wall = end - start
            else:
                lo, hi = w * length, (w + 1) * length

                done_in_pass = [sum(1 for r in pending if lo <= r.index < hi)]

                def passed(lo: int = lo, hi: int = hi, done: list[int] = done_in_pass, into=pending) -> bool:
                    new = run.collect()
                    into.extend(new)
                    done[0] += sum(1 for r in new if lo <= r.index < hi)
                    return done[0] >= length

                run.wait_for(passed)
                got = sorted((r for r in pending if lo <= r.index < hi), key=lambda r: r.index)
                pending = [r for r in pending if r.index >= hi]
                # the pass's gaps: the one before its first arrival, and those between its arrivals
                start, end = got[0].sent - gaps[0], got[-1].sent
                wall = end - start
            windows.append((got, start, end))
            summaries.append(summarize([r.done - r.sent for r in got], batch_size, wall))
            start = end
            if windows_agree(summaries, rules):
                break
    finally:
        run.finish()
    run.check()
    records = run.all_records()
    after = finish_snapshot(len(records)) if finish_snapshot else None
    measured = [r for r in records if r.done >= began] if rate is None else [r for r in records if r.index >= 0]
    return _result(level, rate, len(senders), batch_size, cfg, windows, summaries, measured, before, after)


def _result(
    level: str,
    rate: float | None,
    slots: int,
    batch_size: int,
    cfg: BenchmarkingSection,
    windows: list[tuple[list[Record], int, int]],
    summaries: list[LatencySummary],
    measured: list[Record],
    before: ServerStats | None,
    after: ServerStats | None,
) -> LevelResult:
    rules = cfg.stability
    kept = windows[-rules.agree_windows :]
    stable = windows_agree(summaries, rules)
    used = [r for got, _, _ in kept for r in got]
    wall = sum(end - start for _, start, end in kept)
    summary = summarize([r.done - r.sent for r in used], batch_size, wall)
    mean_ms = sum(r.done - r.sent for r in measured) / len(measured) / 1e6
    cpu_ms = sum(r.cpu_ns for r in measured) / len(measured) / 1e6
    flags = quality_flags(summary, stable, rules)
    achieved = late = None
    if rate is not None:
        achieved = len(used) / (wall / 1e9)
        late = sum(1 for r in used if r.sent - r.due > LATE_NS) / len(used)
        if late > 0.01:
            flags.append("late_sends")
    server = None
    if before is not None and after is not None and after.count > before.count:
        n = after.count - before.count
        queue = (after.queue_ns - before.queue_ns) / n / 1e6
        compute = (after.compute_ns - before.compute_ns) / n / 1e6
        server = (queue, compute, max(0.0, mean_ms - queue - compute))
    return LevelResult(
        level=level,
        mode="request_rate" if rate is not None else "concurrency",
        asked=rate if rate is not None else float(slots),
        summary=summary,
        windows=summaries,
        stable=stable,
        flags=flags,
        achieved_per_s=achieved,
        late_share=late,
        mean_ms=mean_ms,
        client_cpu_ms=cpu_ms,
        requests=len(measured),
        server=server,
    )


def level_snapshots(
    backend: InferenceBackend, own_client: bool
) -> tuple[Callable[[], ServerStats | None], Callable[[int], ServerStats | None]]:
    """The statistics readings of a level: at its start, and at its end once the server counts every request the
    level sent (a Triton backend is told of those a client of the level's own sent; ``bind()`` calls count
    themselves; other backends have no statistics)."""
    told = getattr(backend, "count_answered", None) if own_client else None

    def at_end(requests: int) -> ServerStats | None:
        if told is not None:
            told(requests)
        return backend.stats()

    return backend.stats, at_end
