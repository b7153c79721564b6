"""Latency-vs-throughput curves of a load benchmark, read back from its run's metrics (``load_c4_p99_ms``,
``load_r100_throughput_per_s``, ``throughput_at_sla_per_s``, ``load_sla_p99_ms``; see
:mod:`podium.core.metric_names`). Pure: the board serves them, the selection report draws them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from podium.core.metric_names import LOAD_SLA, THROUGHPUT_AT_SLA

#: ``load_{level}_{stat}`` for the stats a curve needs; ``c4`` (closed loop), ``r100`` / ``r12p5`` (open loop).
_METRIC = re.compile(r"^load_(c\d+|r\d+(?:p\d+)?)_(throughput_per_s|p50_ms|p99_ms|achieved_per_s)$")
MODES = {"c": "concurrency", "r": "request_rate"}


def load_of(level: str) -> float:
    """What a level name asks for: ``c4`` -> 4 in flight, ``r12p5`` -> 12.5 requests per second."""
    return float(level[1:].replace("p", "."))


def load_levels(metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    """The run's load levels, closed loop first then open loop, each by the load it asked for: ``{"level",
    "mode", "load", "throughput_per_s", "p50_ms", "p99_ms"[, "achieved_per_s"]}``; a level without a
    throughput or a p99 is no point of a curve and is left out."""
    levels: dict[str, dict[str, Any]] = {}
    for name, value in metrics.items():
        match = _METRIC.match(name)
        if match:
            level, stat = match.groups()
            levels.setdefault(level, {})[stat] = value
    out = []
    for level, stats in levels.items():
        if "throughput_per_s" not in stats or "p99_ms" not in stats:
            continue
        point = {"level": level, "mode": MODES[level[0]], "load": load_of(level)}
        point |= {k: stats.get(k) for k in ("throughput_per_s", "p50_ms", "p99_ms")}
        if "achieved_per_s" in stats:
            point["achieved_per_s"] = stats["achieved_per_s"]
        out.append(point)
    out.sort(key=lambda p: (p["mode"] != "concurrency", p["load"]))
    return out


def load_curve(metrics: Mapping[str, float]) -> dict[str, Any] | None:
    """``{"levels": [...], "throughput_at_sla_per_s": x or None}``; None for a run with no load level."""
    levels = load_levels(metrics)
    if not levels:
        return None
    curve = {"levels": levels, "throughput_at_sla_per_s": metrics.get(THROUGHPUT_AT_SLA)}
    if LOAD_SLA in metrics:  # the budget the figure was measured at (runs logged before it carry none)
        curve["sla_p99_ms"] = metrics[LOAD_SLA]
    return curve
