"""Selection report: an F1-vs-latency chart and a table per (study, config), logged to MLflow; where the candidates
were measured at load levels, a latency-vs-throughput chart beside it (p99 against throughput per level, one curve
per model, the p99 budget, the chosen model marked)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podium.core.config import SelectionConfig
from podium.core.figure import ranked_batch_size, statistic_name
from podium.core.load_curves import load_curve
from podium.core.pareto import pareto_front
from podium.core.selection import Candidate, Selection, higher_is_better

if TYPE_CHECKING:
    from podium.tracking.tracker import MlflowTracking


@dataclass(frozen=True)
class ReportFiles:
    chart: Path
    markdown: Path
    html: Path
    points: int
    #: The latency-vs-throughput chart; None when no candidate's run has load levels.
    load_chart: Path | None = None
    #: What it draws (:func:`load_series`).
    load: dict[str, Any] | None = None


def _name(sel: Selection) -> str:
    return f"{sel.study_key_hash[:12]}-{(sel.benchmark_config_hash or 'legacy')[:12]}"


def point_label(c: Candidate) -> str:
    """What a point of the chart says of its candidate: the trial (short hash) and the backbone."""
    return c.trial_key_hash[:7] + (f" {c.backbone}" if c.backbone else "")


def chart_title(sel: Selection, config: SelectionConfig, device: str | None) -> str:
    """The study, the batch size and the device measured on; then the config and how latency was aggregated."""
    batch = ranked_batch_size(config.benchmark)
    return (
        f"study {sel.study_key_hash[:12]} · batch {batch} · "
        f"{device or 'device unknown'}\nconfig {(sel.benchmark_config_hash or 'legacy')[:12]} · "
        f"{config.selection.policy} · {_figure(config)}"
    )


def _figure(config: SelectionConfig) -> str:
    """``p50 per run, median across runs``."""
    return f"{statistic_name(config.benchmark)} per run, {config.benchmark.across_runs} across runs"


def chart(sel: Selection, config: SelectionConfig, path: Path, device: str | None = None) -> int:
    """Scatter of every candidate (labelled with its trial and backbone; unstable ones ringed), the Pareto
    front, the chosen model, the tolerance band; the legend beside the plot, off the points. Returns points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maximize = config.objective.direction == "maximize"
    everyone = (*sel.candidates, *sel.excluded)  # excluded ones are shown too (ringed when in doubt)
    xs = [c.latency_ms for c in everyone]
    ys = [c.objective for c in everyone]
    front = pareto_front(sel.candidates, maximize, higher_is_better(config))
    fig, ax = plt.subplots(figsize=(9.5, 5), dpi=110)
    ax.scatter(xs, ys, s=28, color="#7f8c8d", label=f"candidates ({len(xs)})", zorder=2)
    doubtful = [c for c in everyone if c.unstable]
    if doubtful:
        ax.scatter(
            [c.latency_ms for c in doubtful],
            [c.objective for c in doubtful],
            s=110,
            facecolors="none",
            edgecolors="#c0392b",
            label=f"in doubt{'' if config.selection.include_unstable else ', not competing'} ({len(doubtful)})",
            zorder=5,
        )
    for c in everyone:
        ax.annotate(point_label(c), (c.latency_ms, c.objective), xytext=(4, 4), textcoords="offset points", fontsize=6)
    ax.plot(
        [c.latency_ms for c in front],
        [c.objective for c in front],
        "-o",
        color="#2980b9",
        ms=4,
        label="Pareto front",
        zorder=3,
    )
    ax.scatter(
        [sel.best.latency_ms],
        [sel.best.objective],
        s=160,
        marker="*",
        color="#e67e22",
        label=f"chosen ({config.selection.policy})",
        zorder=4,
    )
    if config.selection.policy == "tolerance":
        top = max(ys) if maximize else min(ys)
        tol = config.objective.tolerance
        lo, hi = (top - tol, top) if maximize else (top, top + tol)
        ax.axhspan(lo, hi, color="#f1c40f", alpha=0.2, label=f"tolerance ±{tol:g}")
    unit = "throughput/s at the p99 budget" if higher_is_better(config) else "latency ms"
    ax.set_xlabel(f"{unit} ({_figure(config)})")
    ax.set_ylabel(config.objective.metric)
    ax.set_title(chart_title(sel, config, device), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return len(xs)


COLUMNS = ("rank", "trial", "backbone", "objective", "latency ms", "figure", "p99 ms", "score", "doubt", "artifact run")
#: Marks a candidate whose figure is in doubt in the rank column; explained under each table that has one.
UNSTABLE_MARK = "⚠"
UNSTABLE_NOTE = (
    f"{UNSTABLE_MARK} unstable: the representative run's windows never agreed, so its latency is in doubt "
    "(its mean and p50 may differ widely); contended: other processes took the host while it measured. Such "
    "candidates are shown but do not compete unless selection.include_unstable (podium select --include-unstable)."
)
NUMERIC = {"objective", "latency ms", "p99 ms", "score", "throughput/s at SLA"}


def columns(config: SelectionConfig) -> tuple[str, ...]:
    """The table's columns; under ``throughput_at_sla`` the ranked figure is a throughput, not a latency."""
    if not higher_is_better(config):
        return COLUMNS
    return tuple("throughput/s at SLA" if c == "latency ms" else c for c in COLUMNS)


def rows(sel: Selection, config: SelectionConfig | None = None) -> list[list[str]]:
    """Competing candidates in rank order (★ the published best), then the excluded ones (rank ``-``); under
    ``throughput_at_sla`` (``config``) a candidate without a load benchmark shows ``-`` as its figure."""
    ranked = [(str(i + 1), c) for i, c in enumerate(sel.candidates)]
    no_figure = config is not None and higher_is_better(config)
    return [_row(label, c, sel, no_figure) for label, c in (*ranked, *(("-", c) for c in sel.excluded))]


def _row(label: str, c: Candidate, sel: Selection, throughput: bool = False) -> list[str]:
    mark = (" ★" if c is sel.best else "") + (" ↑" if c is sel.challenger else "")
    figure = "-" if throughput and c.throughput_at_sla_per_s is None else f"{c.latency_ms:.3f}"
    return [
        label + mark + (f" {UNSTABLE_MARK}" if c.unstable else ""),
        c.trial_key_hash[:12],
        c.backbone or "-",
        f"{c.objective:.4f}",
        figure,
        c.latency_figure or "-",
        "-" if c.p99_ms is None else f"{c.p99_ms:.3f}",
        "-" if c.composite_score is None else f"{c.composite_score:.4f}",
        c.excluded or c.doubt or "-",
        c.artifact_run_id,
    ]


def notes(sel: Selection) -> list[str]:
    """What a reader of a table must know: a challenger within noise, candidates in doubt."""
    out = []
    if sel.challenger is not None:
        out.append(
            f"↑ {sel.note}: it ranks first, but its advantage over ★ is not beyond the noise "
            "(selection.confidence, selection.min_improvement); the published best stays until it is."
        )
    if any(c.unstable for c in (*sel.candidates, *sel.excluded)):
        out.append(UNSTABLE_NOTE)
    return out


def load_series(sel: Selection, run_metrics: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """What the latency-vs-throughput chart draws: per candidate (competing first, then excluded) whose
    representative run has load levels, its closed- and open-loop curves (``{"level", "throughput_per_s",
    "p99_ms"}`` in load order), its throughput at the budget, and whether it is the chosen one; the p99 budget
    (the chosen model's, else the first one a run names; None when none does)."""
    curves = []
    for c in (*sel.candidates, *sel.excluded):
        curve = load_curve(run_metrics.get(c.benchmark_run_id, {}))
        if curve is None:
            continue
        by_mode: dict[str, list[dict[str, Any]]] = {}
        for level in curve["levels"]:
            by_mode.setdefault(level["mode"], []).append({k: level[k] for k in ("level", "throughput_per_s", "p99_ms")})
        curves.append(
            {
                "trial_key_hash": c.trial_key_hash,
                "label": point_label(c),
                "benchmark_run_id": c.benchmark_run_id,
                "chosen": c is sel.best,
                "competing": c.excluded is None,
                "curves": by_mode,
                "throughput_at_sla_per_s": curve["throughput_at_sla_per_s"],
                "sla_p99_ms": curve.get("sla_p99_ms"),
            }
        )
    budgets = [s["sla_p99_ms"] for s in sorted(curves, key=lambda s: not s["chosen"]) if s["sla_p99_ms"] is not None]
    return {"sla_p99_ms": budgets[0] if budgets else None, "curves": curves}


def load_chart(load: Mapping[str, Any], config: SelectionConfig, path: Path, device: str | None = None) -> None:
    """p99 against throughput, one curve per model and loop (closed: solid, open: dashed), the p99 budget as a
    horizontal line, the chosen model drawn thick with a star at its throughput at the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 5), dpi=110)
    styles = {"concurrency": ("-o", "closed loop"), "request_rate": ("--s", "open loop")}
    for series in load["curves"]:
        chosen = series["chosen"]
        for mode, points in series["curves"].items():
            style, loop = styles.get(mode, ("-x", mode))
            ax.plot(
                [p["throughput_per_s"] for p in points],
                [p["p99_ms"] for p in points],
                style,
                ms=4,
                lw=2.6 if chosen else 1.0,
                color="#e67e22" if chosen else None,
                alpha=1.0 if series["competing"] else 0.4,
                label=f"{series['label']} {loop}" + (" (chosen)" if chosen else ""),
                zorder=4 if chosen else 2,
            )
            for p in points:
                ax.annotate(
                    p["level"],
                    (p["throughput_per_s"], p["p99_ms"]),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=6,
                )
    sla = load["sla_p99_ms"]
    if sla is not None:
        ax.axhline(sla, color="#c0392b", ls=":", label=f"p99 budget {sla:g} ms")
        best = next((s for s in load["curves"] if s["chosen"]), None)
        if best is not None and best["throughput_at_sla_per_s"]:
            ax.scatter(
                [best["throughput_at_sla_per_s"]],
                [sla],
                s=160,
                marker="*",
                color="#e67e22",
                zorder=5,
                label=f"chosen: {best['throughput_at_sla_per_s']:.1f}/s at the budget",
            )
    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel("p99 latency ms")
    ax.set_title(
        f"latency vs throughput per load level · {device or 'device unknown'} · {config.selection.policy}", fontsize=9
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(
    sel: Selection,
    config: SelectionConfig,
    out: Path,
    device: str | None = None,
    run_metrics: Mapping[str, Mapping[str, float]] | None = None,
) -> ReportFiles:
    """The chart, the table (Markdown and HTML) and, when ``run_metrics`` (by benchmark run id) hold load levels
    for some candidate, the latency-vs-throughput chart beside the first."""
    out.mkdir(parents=True, exist_ok=True)
    name = _name(sel)
    png = out / f"selection-{name}.png"
    points = chart(sel, config, png, device)
    load = load_series(sel, run_metrics or {})
    load_png = out / f"load-{name}.png" if load["curves"] else None
    if load_png is not None:
        load_chart(load, config, load_png, device)
    heads_of = columns(config)
    md = out / f"selection-{name}.md"
    table = ["| " + " | ".join(heads_of) + " |", "|" + " --- |" * len(heads_of)]
    table += ["| " + " | ".join(r) + " |" for r in rows(sel, config)]
    md.write_text(
        f"# Selection: study {sel.study_key_hash}\n\nconfig `{sel.benchmark_config_hash}`, policy "
        f"`{config.selection.policy}`, latency `{_figure(config)}`\n\n"
        + "\n".join(table)
        + "".join(f"\n\n{line}" for line in notes(sel))
        + f"\n\n![chart]({png.name})\n"
        + (f"\n![latency vs throughput]({load_png.name})\n" if load_png is not None else "")
    )
    page = out / f"selection-{name}.html"
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows(sel, config))
    heads = "".join(f"<th>{html.escape(c)}</th>" for c in heads_of)
    beside = f"<img src='{load_png.name}'>" if load_png is not None else ""
    note = "".join(f"<p>{html.escape(line)}</p>" for line in notes(sel))
    page.write_text(
        f"<html><body><h1>Study {html.escape(sel.study_key_hash)}</h1><div><img src='{png.name}'>{beside}</div>"
        f"<table border=1><tr>{heads}</tr>{cells}</table>{note}</body></html>"
    )
    return ReportFiles(png, md, page, points, load_png, load if load_png is not None else None)


def device_of(tracking: MlflowTracking, sel: Selection) -> str | None:
    """The device the best candidate's representative run was measured on (its device tag)."""
    try:
        return tracking.client.get_run(sel.best.benchmark_run_id).data.tags.get(tracking.tags.benchmark.device)
    except Exception:  # a title detail: an unreadable run leaves it "unknown"
        return None


def run_metrics_of(tracking: MlflowTracking, sel: Selection) -> dict[str, dict[str, float]]:
    """Every metric of each candidate's representative run (the load levels the second chart draws), by run id;
    a run that cannot be read is left out (its curve is not drawn)."""
    out: dict[str, dict[str, float]] = {}
    for c in (*sel.candidates, *sel.excluded):
        try:
            out[c.benchmark_run_id] = dict(tracking.client.get_run(c.benchmark_run_id).data.metrics)
        except Exception:  # a chart detail, like device_of
            continue
    return out


def log_to_mlflow(tracking: MlflowTracking, sel: Selection, files: ReportFiles) -> str:
    """A ``code.stage=selection`` run holding the chart and the tables."""
    t = tracking.tags
    run_id, _ = tracking.start_benchmark_run(
        {
            t.stage.key: t.stage.selection,
            t.grouping.study_key_hash: sel.study_key_hash,
            "code.selection.best_trial": sel.best.trial_key_hash,
            "code.selection.config_hash": sel.benchmark_config_hash or "legacy",
        },
        run_name=f"selection-{_name(sel)}",
    )
    for f in (files.chart, files.markdown, files.html, *([files.load_chart] if files.load_chart else [])):
        tracking.client.log_artifact(run_id, str(f), "selection")
    tracking.finish_run(run_id)
    return run_id


class NewBestReporter:
    """For the aggregator: on a new best, write and log the report of that scope, at most once per
    ``min_interval_s`` per scope, on a background thread (never on the stream's hot path)."""

    def __init__(self, tracking: MlflowTracking, config: SelectionConfig, out: Path, min_interval_s: float = 60.0):
        from concurrent.futures import ThreadPoolExecutor

        self.tracking, self.config, self.out, self.min_interval_s = tracking, config, out, min_interval_s
        self._last: dict[tuple[str, str | None], float] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-report")

    def __call__(self, sel: Selection) -> bool:
        import time

        scope = (sel.study_key_hash, sel.benchmark_config_hash)
        now = time.monotonic()
        if now - self._last.get(scope, -1e9) < self.min_interval_s:
            return False
        self._last[scope] = now
        self._pool.submit(self._write, sel)
        return True

    def _write(self, sel: Selection) -> None:
        import logging

        try:
            files = write(sel, self.config, self.out, device_of(self.tracking, sel), run_metrics_of(self.tracking, sel))
            log_to_mlflow(self.tracking, sel, files)
        except Exception as exc:  # a report is a convenience; never take the aggregator down
            logging.getLogger(__name__).warning("Selection report for %s failed: %s", sel.study_key_hash[:12], exc)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
