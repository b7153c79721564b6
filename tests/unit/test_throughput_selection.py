"""Selection by a load benchmark's throughput at its p99 budget (``selection.policy: throughput_at_sla``): the
config's two spellings, the ranking (higher is better), who does not compete and why, the noise test mirrored,
and what ``podium select --json`` shows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from podium.core.aggregation import ScopeKey
from podium.core.config import SelectionConfig
from podium.core.documents import selection_document
from podium.core.figure import describe, figure_label, ranking_metric, statistic_name
from podium.core.metric_names import THROUGHPUT_AT_SLA
from podium.core.records import BenchmarkRecord, TrialRecord
from podium.core.selection import Candidate, exclusion, rank, split
from podium.core.state import SelectionState, select_all
from podium.core.validation import parse_model
from podium.errors import ConfigError

C1 = "1" * 64
P50 = "latency_batch_1_p50_ms"
P99 = "latency_batch_1_p99_ms"
POLICY = {"selection": {"policy": "throughput_at_sla"}}


def cfg(**sections) -> SelectionConfig:
    return parse_model(SelectionConfig, sections, "best_model_selection.yaml")


def cand(trial: str, f1: float, throughput: float | None, p99: float | None = 5.0) -> Candidate:
    return Candidate(
        trial,
        f"k-{trial}",
        f1,
        throughput or 0.0,
        1,
        f"b-{trial}",
        f"t-{trial}",
        f"a-{trial}",
        None,
        p99_ms=p99,
        throughput_at_sla_per_s=throughput,
    )


def trial(t: str, f1: float) -> TrialRecord:
    return TrialRecord(f"trial-{t}", "trial", 0, "s", t, f1, "bb")


def run(run_id: str, t: str, start: int, throughput: float | None, p50: float = 4.0, **extra: float):
    metrics = {P50: p50, P99: 2 * p50, **extra}
    if throughput is not None:
        metrics[THROUGHPUT_AT_SLA] = throughput
    return BenchmarkRecord(run_id, start, "s", t, f"K-{t}", C1, metrics)


# ---------------------------------------------------------------- config


def test_the_policy_and_the_metric_name_each_other() -> None:
    by_policy = cfg(**POLICY)
    by_metric = cfg(benchmark={"latency_metric": THROUGHPUT_AT_SLA})
    for c in (by_policy, by_metric):
        assert (c.selection.policy, ranking_metric(c.benchmark)) == ("throughput_at_sla", THROUGHPUT_AT_SLA)
    assert by_policy == by_metric
    # the serial batch size it holds to max_latency_ms may still be named
    assert cfg(selection={"policy": "throughput_at_sla"}, benchmark={"batch_size": 8}).benchmark.batch_size == 8
    assert cfg(**POLICY).with_aggregation("mean").benchmark.latency_metric == THROUGHPUT_AT_SLA
    assert SelectionConfig().benchmark.latency_metric is None  # the default policy is untouched


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"benchmark": {"latency_metric": THROUGHPUT_AT_SLA}, "selection": {"policy": "weighted"}},
            "throughput_at_sla_per_s is better higher: set selection.policy: throughput_at_sla",
        ),
        (
            {"benchmark": {"latency_metric": "latency_batch_1_ms"}, "selection": {"policy": "throughput_at_sla"}},
            r"ranks by throughput_at_sla_per_s: drop benchmark.latency_metric \(latency_batch_1_ms\)",
        ),
    ],
)
def test_a_throughput_ranked_lower_first_is_refused(sections: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg(**sections)


def test_the_figure_says_it_is_a_throughput() -> None:
    bench = cfg(**POLICY).benchmark
    assert statistic_name(bench) == "throughput_at_sla"
    assert figure_label(bench, 3) == "throughput_at_sla, median of 3 runs"
    assert describe(bench) == {
        "statistic": "throughput_at_sla",
        "batch_size": 1,
        "metric": THROUGHPUT_AT_SLA,
        "across_runs": "median",
        "window": 10,
        "unit": "per_s",
        "higher_is_better": True,
    }
    assert "higher_is_better" not in describe(SelectionConfig().benchmark)


# ---------------------------------------------------------------- ranking


def test_higher_throughput_ranks_first_within_an_objective_step() -> None:
    ranked = rank([cand("a", 0.905, 100.0), cand("b", 0.901, 300.0), cand("c", 0.909, 200.0)], cfg(**POLICY))
    assert [c.trial_key_hash for c in ranked] == ["b", "c", "a"]


def test_the_objective_comes_first() -> None:
    ranked = rank([cand("fast", 0.80, 900.0), cand("good", 0.90, 10.0)], cfg(**POLICY))
    assert [c.trial_key_hash for c in ranked] == ["good", "fast"]


def test_ties_break_by_trial_key_hash() -> None:
    ranked = rank([cand("z", 0.9, 50.0), cand("a", 0.9, 50.0), cand("m", 0.9, 50.0)], cfg(**POLICY))
    assert [c.trial_key_hash for c in ranked] == ["a", "m", "z"]


def test_without_a_load_figure_or_meeting_no_level_a_candidate_does_not_compete() -> None:
    config = cfg(**POLICY)
    none, zero, ok = cand("none", 0.99, None), cand("zero", 0.99, 0.0), cand("ok", 0.5, 40.0)
    ranked, out = split([none, zero, ok], config)
    assert [c.trial_key_hash for c in ranked] == ["ok"]
    reasons = {c.trial_key_hash: c.excluded for c in out}
    assert reasons == {
        "none": "no load benchmark with a p99 budget (benchmarking.load levels and load.sla_p99_ms)",
        "zero": "no load level met the p99 budget: throughput_at_sla_per_s 0",
    }


def test_max_latency_holds_the_serial_p99_as_constraint_does() -> None:
    config = cfg(selection={"policy": "throughput_at_sla", "max_latency_ms": 10})
    assert exclusion(cand("a", 0.9, 100.0, p99=12.0), config) == "p99 12.000 ms over max_latency_ms 10"
    assert exclusion(cand("a", 0.9, 100.0, p99=None), config) == "no p99 figure to hold to max_latency_ms 10"
    assert exclusion(cand("a", 0.9, 100.0, p99=9.0), config) is None


def test_in_doubt_is_out_unless_let_in() -> None:
    doubtful = replace(cand("a", 0.9, 500.0), unstable=True, doubt="unstable")
    assert [c.trial_key_hash for c in rank([doubtful, cand("b", 0.9, 100.0)], cfg(**POLICY))] == ["b"]
    let_in = cfg(selection={"policy": "throughput_at_sla", "include_unstable": True})
    assert [c.trial_key_hash for c in rank([doubtful, cand("b", 0.9, 100.0)], let_in)] == ["a", "b"]


# ---------------------------------------------------------------- the fold


def test_runs_without_the_figure_are_shown_with_the_reason() -> None:
    runs = [run("r1", "t1", 1, 120.0), run("r2", "t2", 2, None), run("r3", "t3", 3, 0.0)]
    (sel,), state = select_all(runs, [trial("t1", 0.9), trial("t2", 0.95), trial("t3", 0.95)], cfg(**POLICY))
    assert sel.best.trial_key_hash == "t1" and sel.best.throughput_at_sla_per_s == 120.0
    assert sel.best.latency_ms == 120.0 and sel.best.latency_figure == "throughput_at_sla, 1 run"
    assert {c.trial_key_hash: c.excluded for c in sel.excluded} == {
        "t2": "no load benchmark with a p99 budget (benchmarking.load levels and load.sla_p99_ms)",
        "t3": "no load level met the p99 budget: throughput_at_sla_per_s 0",
    }
    assert state.skipped.missing_metric == 0  # kept, to be shown; never skipped silently
    from podium.aggregator.report import columns, rows

    figure = columns(cfg(**POLICY)).index("throughput/s at SLA")
    assert [r[figure] for r in rows(sel, cfg(**POLICY))] == ["120.000", "-", "0.000"]
    assert "throughput/s at SLA" not in columns(SelectionConfig())


def test_a_scope_of_serial_runs_only_is_unselected_with_the_reason() -> None:
    (), state = select_all([run("r1", "t1", 1, None)], [trial("t1", 0.9)], cfg(**POLICY))
    (only,) = state.unselected(ScopeKey("s", C1))
    assert only.throughput_at_sla_per_s is None and only.excluded.startswith("no load benchmark")


def test_a_group_with_some_load_runs_is_ranked_by_them() -> None:
    runs = [run("r1", "t1", 1, None), run("r2", "t1", 2, 200.0), run("r3", "t1", 3, 100.0)]
    (sel,), _ = select_all(runs, [trial("t1", 0.9)], cfg(**POLICY))
    assert sel.best.throughput_at_sla_per_s == 150.0 and sel.best.benchmark_runs_count == 2


def test_a_faster_challenger_must_be_faster_beyond_the_noise() -> None:
    """The noise test mirrored: a few percent more throughput on one run keeps the best; a clear, repeated lead
    replaces it. Less throughput never promotes."""
    config = cfg(**POLICY)
    trials = [trial("t1", 0.9), trial("t2", 0.9)]
    incumbent = [run(f"i{i}", "t1", i, v) for i, v in enumerate((100.0, 102.0, 99.0))]
    state = SelectionState(config)
    for t in trials:
        state.apply_trial(t)
    for r in incumbent:
        state.apply_benchmark(r)
    state.apply_benchmark(run("c0", "t2", 10, 103.0))
    sel = state.select(ScopeKey("s", C1))
    assert sel is not None and sel.best.trial_key_hash == "t1" and sel.challenger.trial_key_hash == "t2"
    bests = []
    for i in range(5):
        state.apply_benchmark(run(f"c{i + 1}", "t2", 11 + i, 125.0))
        bests.append(state.select(ScopeKey("s", C1)).best.trial_key_hash)
    assert bests[-1] == "t2" and bests[0] == "t1"  # settled by repeated evidence, not one run

    slower = SelectionState(config)
    for t in trials:
        slower.apply_trial(t)
    for r in [*incumbent, *(run(f"s{i}", "t2", 10 + i, 50.0) for i in range(5))]:
        slower.apply_benchmark(r)
    sel = slower.select(ScopeKey("s", C1))
    assert sel.best.trial_key_hash == "t1" and sel.challenger is None


def test_select_json_shows_the_figure() -> None:
    (sel,), _ = select_all([run("r1", "t1", 1, 120.0)], [trial("t1", 0.9)], cfg(**POLICY))
    doc = selection_document(sel, describe(cfg(**POLICY).benchmark))
    assert doc["best"]["throughput_at_sla_per_s"] == 120.0 and doc["latency"]["higher_is_better"] is True
