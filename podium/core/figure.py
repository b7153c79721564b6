"""The latency figure selection ranks by, named once: a per-run statistic (``p50`` by default; ``p90``, ``p99``,
``mean``) at one batch size, aggregated across runs (``latest``, ``median`` or ``mean`` of the newest ``window``).

Two words that readers confuse are kept apart everywhere a figure is shown: "p50" is a percentile of one run's
requests; "median of 3 runs" is how runs are combined. A label reads ``"p50, median of 3 runs"``.
"""

from __future__ import annotations

import re

from podium.core.config import BenchmarkSelectionSection
from podium.core.metric_names import THROUGHPUT_AT_SLA, batch_size_of, latency_metric

_STAT = re.compile(r"^latency_batch_\d+_(p\d+)_ms$")
_MEAN = re.compile(r"^latency_batch_\d+_ms$")


def ranking_metric(bench: BenchmarkSelectionSection) -> str:
    """The MLflow metric holding each run's figure: ``latency_metric`` when set, else ``statistic`` at
    ``batch_size`` (``latency_batch_1_p50_ms``; the mean is ``latency_batch_1_ms``)."""
    if bench.latency_metric is not None:
        return bench.latency_metric
    return latency_metric(bench.batch_size, "" if bench.statistic == "mean" else bench.statistic)


def statistic_name(bench: BenchmarkSelectionSection) -> str:
    """``p50``, ``p99``, ``mean``, ``throughput_at_sla``; for an explicit metric of another shape, the metric's own
    name."""
    metric = ranking_metric(bench)
    if metric == THROUGHPUT_AT_SLA:
        return "throughput_at_sla"
    if (match := _STAT.match(metric)) is not None:
        return match.group(1)
    return "mean" if _MEAN.match(metric) else metric


def ranked_batch_size(bench: BenchmarkSelectionSection) -> int:
    """The batch size the ranked figure is measured at (``batch_size`` for a metric that names none)."""
    return batch_size_of(ranking_metric(bench)) or bench.batch_size


def tail_metric(bench: BenchmarkSelectionSection) -> str:
    """The p99 of the ranked batch size, which the ``constraint`` policy holds to ``max_latency_ms``."""
    return latency_metric(ranked_batch_size(bench), "p99")


def figure_label(bench: BenchmarkSelectionSection, runs: int) -> str:
    """``"p50, median of 3 runs"``; ``"p99, latest of 4 runs"``; ``"mean, 1 run"``."""
    stat = statistic_name(bench)
    if runs == 1:
        return f"{stat}, 1 run"
    return f"{stat}, {bench.across_runs} of {runs} runs"


def describe(bench: BenchmarkSelectionSection) -> dict[str, object]:
    """The figure as ``podium select --json`` and the channel name it (a throughput says it is better higher)."""
    described: dict[str, object] = {
        "statistic": statistic_name(bench),
        "batch_size": ranked_batch_size(bench),
        "metric": ranking_metric(bench),
        "across_runs": bench.across_runs,
        "window": bench.window,
    }
    if ranking_metric(bench) == THROUGHPUT_AT_SLA:
        described |= {"unit": "per_s", "higher_is_better": True}
    return described
