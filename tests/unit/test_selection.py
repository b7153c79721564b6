"""Selection policies and the fold: scope isolation, tie-breaks, streaming order == batch."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podium.core.aggregation import ScopeKey
from podium.core.config import SelectionConfig
from podium.core.records import BenchmarkRecord, TrialRecord
from podium.core.selection import Candidate, rank
from podium.core.state import SelectionState, select_all
from podium.core.validation import parse_model

C1, C2 = "1" * 64, "2" * 64
#: The default ranked figure: each run's p50 at batch 1.
P50 = "latency_batch_1_p50_ms"


def cfg(**sections) -> SelectionConfig:
    return parse_model(SelectionConfig, sections, "test")


def cand(trial: str, f1: float, lat: float, key: str | None = None) -> Candidate:
    return Candidate(trial, key or f"k-{trial}", f1, lat, 1, f"b-{trial}", f"t-{trial}", f"a-{trial}", None)


def trial(t: str, f1: float | None, study: str = "s", kind: str = "trial", start: int = 0) -> TrialRecord:
    return TrialRecord(f"{kind}-{t}-{start}", kind, start, study, t, f1, "bb")  # type: ignore[arg-type]


def bench(
    run: str, t: str, lat: float, start: int, key: str | None = "K", config: str | None = C1, study: str = "s"
) -> BenchmarkRecord:
    key = None if key is None else f"{key}-{t}-{(config or '-')[:1]}"  # real keys hash the config
    return BenchmarkRecord(run, start, study, t, key, config, {P50: lat})


# ---------------------------------------------------------------- policies


WEIGHTED = {"policy": "weighted"}


def test_weighted_scores_on_fixed_scales() -> None:
    """0.7 x objective in points (0.01) - 0.3 x latency in ms: never normalised over the candidates."""
    ranked = rank([cand("a", 0.9, 20.0), cand("b", 0.8, 10.0), cand("c", 0.7, 15.0)], cfg(selection=WEIGHTED))
    scores = {c.trial_key_hash: c.composite_score for c in ranked}
    assert scores["a"] == pytest.approx(0.7 * 90 - 0.3 * 20)
    assert scores["b"] == pytest.approx(0.7 * 80 - 0.3 * 10)
    assert scores["c"] == pytest.approx(0.7 * 70 - 0.3 * 15)
    assert [c.trial_key_hash for c in ranked] == ["a", "b", "c"]


def test_weighted_latency_heavy_and_unnormalised_weights() -> None:
    heavy = cfg(scoring={"f1_weight": 1, "latency_weight": 3, "normalize_weights": True}, selection=WEIGHTED)
    assert rank([cand("a", 0.9, 20.0), cand("b", 0.8, 10.0)], heavy)[0].trial_key_hash == "b"
    raw = cfg(scoring={"f1_weight": 2, "latency_weight": 2, "normalize_weights": False}, selection=WEIGHTED)
    assert rank([cand("a", 0.9, 20.0)], raw)[0].composite_score == pytest.approx(2 * 90 - 2 * 20)


@pytest.mark.parametrize("policy", ["constraint", "weighted", "tolerance"])
def test_minimize_objective(policy: str) -> None:
    c = cfg(
        objective={"metric": "loss", "direction": "minimize"},
        scoring={"f1_weight": 1, "latency_weight": 0},
        selection={"policy": policy},
    )
    assert rank([cand("a", 0.9, 1.0), cand("b", 0.1, 1.0)], c)[0].trial_key_hash == "b"


def test_tolerance_policy() -> None:
    c = cfg(selection={"policy": "tolerance", "accuracy_tolerance": 0.02})
    ranked = rank([cand("a", 0.90, 30.0), cand("b", 0.885, 12.0), cand("c", 0.87, 5.0), cand("d", 0.89, 12.0)], c)
    # in the band (>= 0.88): b and d are fastest; equal latency -> higher objective first
    assert [x.trial_key_hash for x in ranked] == ["d", "b", "a", "c"]
    assert all(x.composite_score is None for x in ranked)


@pytest.mark.parametrize("policy", ["weighted", "tolerance"])
def test_max_latency_excludes(policy: str) -> None:
    c = cfg(selection={"max_latency_ms": 15, "policy": policy})
    assert [x.trial_key_hash for x in rank([cand("a", 0.9, 20.0), cand("b", 0.5, 10.0)], c)] == ["b"]
    assert rank([cand("a", 0.9, 20.0)], c) == []


def test_constraint_holds_the_p99_to_the_limit() -> None:
    """The default policy: the best objective whose p99 meets max_latency_ms (the ranked p50 may be lower)."""
    c = cfg(selection={"max_latency_ms": 15})
    a, b = replace(cand("a", 0.9, 5.0), p99_ms=20.0), replace(cand("b", 0.5, 10.0), p99_ms=12.0)
    assert [x.trial_key_hash for x in rank([a, b], c)] == ["b"]
    assert rank([a], c) == []
    assert rank([cand("a", 0.9, 5.0)], c) == []  # no p99 to hold to the limit: out, never assumed to pass


@pytest.mark.parametrize("policy", ["constraint", "weighted", "tolerance"])
def test_ties_broken_by_trial_key_hash(policy: str) -> None:
    c = cfg(selection={"policy": policy})
    assert rank([cand("z", 0.9, 10.0), cand("a", 0.9, 10.0), cand("m", 0.9, 10.0)], c)[0].trial_key_hash == "a"


# ---------------------------------------------------------------- the fold


def test_configs_never_compete() -> None:
    """The same trial measured under two configs: two scopes, each with its own best."""
    records = [
        bench("r1", "t1", 5.0, 1, config=C1),
        bench("r2", "t2", 50.0, 2, config=C1),
        bench("r3", "t2", 9.0, 3, config=C2),
        bench("r4", "t1", 90.0, 4, config=C2),
    ]
    sels, _ = select_all(records, [trial("t1", 0.8), trial("t2", 0.8)], SelectionConfig())
    best = {s.benchmark_config_hash: s.best.trial_key_hash for s in sels}
    assert best == {C1: "t1", C2: "t2"}
    assert all(len(s.candidates) == 2 for s in sels)


def test_studies_never_compete() -> None:
    records = [bench("r1", "t1", 5.0, 1, study="s1"), bench("r2", "t2", 1.0, 2, study="s2")]
    sels, _ = select_all(records, [trial("t1", 0.8, "s1"), trial("t2", 0.1, "s2")], SelectionConfig())
    assert {(s.study_key_hash, s.best.trial_key_hash) for s in sels} == {("s1", "t1"), ("s2", "t2")}


def test_outlier_never_wins_and_groups_make_one_candidate() -> None:
    records = [
        bench("r1", "t1", 200.0, 1),
        bench("r2", "t1", 150.0, 2),
        bench("r3", "t1", 210.0, 3),
        bench("r4", "t2", 180.0, 4),
    ]
    trials = [trial("t1", 0.9), trial("t2", 0.9)]
    sels, _ = select_all(records, trials, SelectionConfig())
    (sel,) = sels
    lat = {c.trial_key_hash: c.latency_ms for c in sel.candidates}
    assert lat == {"t1": 200.0, "t2": 180.0}
    assert sel.candidates[0].trial_key_hash == "t2"  # a 'best ever' rule would have ranked t1 (150 ms) first
    # t1 was published first; t2's 10 % edge on one run is within t1's own 150-210 ms spread: t1 stays
    assert sel.best.trial_key_hash == "t1" and sel.challenger is not None and sel.challenger.trial_key_hash == "t2"


def test_artifact_run_is_refit_when_present_and_objective_from_trial() -> None:
    trials = [trial("t1", 0.9), trial("t1", None, kind="refit"), trial("t2", 0.8)]
    sels, _ = select_all([bench("r1", "t1", 1.0, 1), bench("r2", "t2", 1.0, 2)], trials, SelectionConfig())
    by_trial = {c.trial_key_hash: c for c in sels[0].candidates}
    assert by_trial["t1"].artifact_run_id == "refit-t1-0" and by_trial["t1"].objective == 0.9
    assert by_trial["t2"].artifact_run_id == "trial-t2-0"


def test_newest_trial_run_counts() -> None:
    trials = [trial("t1", 0.5, start=1), trial("t1", 0.9, start=5), trial("t1", 0.1, start=3)]
    sels, _ = select_all([bench("r1", "t1", 1.0, 1)], trials, SelectionConfig())
    assert sels[0].best.objective == 0.9


def test_benchmarks_without_trial_or_metric_are_left_out() -> None:
    no_metric = BenchmarkRecord("r9", 1, "s", "t1", "K-t1", C1, {"latency_batch_1_ms": 1.0})  # the mean, no p50
    sels, state = select_all(
        [bench("r1", "t1", 1.0, 1), bench("r2", "ghost", 1.0, 2), no_metric], [trial("t1", 0.9)], SelectionConfig()
    )
    assert [c.trial_key_hash for c in sels[0].candidates] == ["t1"]
    assert state.skipped.missing_metric == 1
    assert state.unjoined_groups() == 1


@pytest.mark.parametrize(
    ("metrics", "left_out"),
    [
        ({P50: -1000.0}, True),
        ({P50: float("nan")}, True),
        ({P50: float("inf")}, True),
        ({P50: 0.5, "latency_batch_1_stable": float("nan")}, True),  # a folded flag, broken
        ({P50: 0.5, "latency_batch_1_p99_ms": -1.0}, True),  # the p99 the constraint policy limits, broken
        ({P50: 0.0}, False),
        ({P50: 0.5, "some_delta": -3.0}, False),  # a metric the fold never reads
    ],
)
def test_a_folded_metric_no_measurement_gives_leaves_the_run_out(metrics: dict, left_out: bool) -> None:
    """The live check dead-letters such a run; the fold leaves it out on every path (podium select, a rebuild)."""
    odd = BenchmarkRecord("r9", 2, "s", "t2", "K-t2", C1, metrics)
    sels, state = select_all([bench("r1", "t1", 1.0, 1), odd], [trial("t1", 0.9), trial("t2", 0.9)], SelectionConfig())
    assert state.skipped.bad_metric == int(left_out)
    assert sorted(c.trial_key_hash for c in sels[0].candidates) == (["t1"] if left_out else ["t1", "t2"])


def test_streaming_reports_changed_scope_and_ignores_replays() -> None:
    state = SelectionState(SelectionConfig())
    state.apply_trial(trial("t1", 0.9))
    first = bench("r1", "t1", 10.0, 1)
    assert state.apply_benchmark(first) == ScopeKey("s", C1)
    assert state.apply_benchmark(first) is None
    assert state.apply_trial(trial("t1", 0.95, start=9)) == [ScopeKey("s", C1)]
    assert state.apply_trial(trial("t1", 0.1, start=2)) == []
    assert state.select(ScopeKey("s", C1)).best.objective == 0.95


def test_legacy_runs_form_their_own_scope() -> None:
    records = [bench("r1", "t1", 10.0, 1, key=None, config=None), bench("r2", "t1", 30.0, 2, key=None, config=C1)]
    sels, _ = select_all(records, [trial("t1", 0.9)], SelectionConfig())
    (sel,) = sels
    assert sel.benchmark_config_hash is None
    assert sel.best.benchmark_key == "legacy_t1"
    assert sel.best.benchmark_runs_count == 2


# ---------------------------------------------------------------- batch == streaming, whatever the order

records_st = st.lists(
    st.builds(
        bench,
        run=st.text(alphabet="abcdefgh", min_size=1, max_size=3),
        t=st.sampled_from(["t1", "t2", "t3", "t4"]),
        lat=st.floats(1, 100, allow_nan=False),
        start=st.integers(0, 40),
        config=st.sampled_from([C1, C2]),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda r: r.run_id,
)


@settings(max_examples=75, deadline=None)
@given(
    records_st,
    st.randoms(),
    st.sampled_from(["latest", "median", "mean"]),
    st.sampled_from(["constraint", "weighted", "tolerance", "throughput_at_sla"]),
)
def test_any_order_with_replays_gives_the_batch_answer(records, rnd, method, policy) -> None:
    config = cfg(benchmark={"latency_aggregation": method, "window": 3}, selection={"policy": policy})
    if policy == "throughput_at_sla":  # the figure is a throughput: some runs lack it (shown), some met no level
        records = [as_load_run(r) for r in records]
    trials = [trial("t1", 0.9), trial("t2", 0.85), trial("t3", 0.95), trial("t4", 0.9)]
    batch, _ = select_all(records, trials, config)

    stream = list(records) + list(records[: len(records) // 2])
    rnd.shuffle(stream)
    state = SelectionState(config)
    events = [("b", r) for r in stream] + [("t", t) for t in trials]
    rnd.shuffle(events)
    latest = {}
    for kind, rec in events:
        scopes = [state.apply_benchmark(rec)] if kind == "b" else state.apply_trial(rec)
        for scope in filter(None, scopes):
            latest[scope] = state.select(scope)
    assert {(s.study_key_hash, s.benchmark_config_hash): s for s in batch} == {
        k: v for k, v in latest.items() if v is not None
    }


def as_load_run(record: BenchmarkRecord) -> BenchmarkRecord:
    """A load benchmark's run: its figure as ``throughput_at_sla_per_s``; runs named ``a...`` have none (measured
    without load levels), ``b...`` met no level (0)."""
    figure = record.metrics[P50]
    if record.run_id.startswith("a"):
        return record
    return replace(record, metrics={P50: figure, "throughput_at_sla_per_s": 0.0 if record.run_id[0] == "b" else figure})


metric_st = st.dictionaries(
    st.sampled_from(
        ["latency_batch_1_ms", "latency_batch_1_stable", "latency_batch_8_p50_ms", "latency_batch_8_stable", "other"]
    ),
    st.sampled_from([0.0, 1.0, 2.5, 7.0]),
)


@settings(max_examples=75, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["t1", "t2", "t3"]), st.integers(0, 30), metric_st), max_size=30),
    st.sampled_from(["latency_batch_1_ms", "latency_batch_8_p50_ms"]),
    st.sampled_from([[], ["latency_batch_1_ms"], ["latency_batch_8_stable", "other"]]),
    st.sampled_from(["latest", "median"]),
)
def test_the_fold_reads_no_metric_but_the_folded_ones(runs, latency_metric, required, method) -> None:
    """A reader that fetches only ``folded_metrics`` (the aggregator's check) gets the selection of the whole runs."""
    from podium.core.state import folded_metrics

    config = cfg(
        benchmark={"latency_aggregation": method, "latency_metric": latency_metric, "required_metrics": required}
    )
    names = folded_metrics(config)
    assert latency_metric in names and set(required) <= set(names)
    whole = [BenchmarkRecord(f"r{i}", start, "s", t, f"K-{t}", C1, m) for i, (t, start, m) in enumerate(runs)]
    narrow = [replace(r, metrics={k: v for k, v in r.metrics.items() if k in names}) for r in whole]
    trials = [trial("t1", 0.9), trial("t2", 0.8), trial("t3", 0.95)]
    (full_selection, full_state), (narrow_selection, narrow_state) = (
        select_all(whole, trials, config),
        select_all(narrow, trials, config),
    )
    assert full_selection == narrow_selection
    assert full_state.skipped == narrow_state.skipped


# ---------------------------------------------------------------- doubts: unstable runs


def doubtful(run: str, t: str, lat: float, start: int, stable: bool) -> BenchmarkRecord:
    metrics = {P50: lat, "latency_batch_1_stable": 1.0 if stable else 0.0}
    return BenchmarkRecord(run, start, "s", t, f"K-{t}-1", C1, metrics)


def test_the_stability_flag_follows_the_latency_metrics_batch_size() -> None:
    from podium.core.metric_names import stability_metric

    assert stability_metric("latency_batch_1_ms") == "latency_batch_1_stable"
    assert stability_metric("latency_batch_32_p50_ms") == "latency_batch_32_stable"
    assert stability_metric("server_compute_batch_8_ms") == "latency_batch_8_stable"
    assert stability_metric("p50_latency") is None


def test_a_candidate_is_unstable_when_its_representative_run_is() -> None:
    """With doubt let in, the representative run's doubt is the candidate's."""
    state = SelectionState(cfg(benchmark={"latency_aggregation": "median"}, selection={"include_unstable": True}))
    state.apply_trial(trial("a", 0.9))
    state.apply_trial(trial("b", 0.8))
    for i, (lat, stable) in enumerate([(1.0, True), (2.0, False), (3.0, True)]):
        state.apply_benchmark(doubtful(f"a{i}", "a", lat, i, stable))
    state.apply_benchmark(doubtful("b0", "b", 5.0, 0, True))
    (a, b) = sorted(state.candidates(ScopeKey("s", C1)), key=lambda c: c.trial_key_hash)
    assert a.benchmark_run_id == "a1" and a.unstable  # the median run (2.0 ms) was unstable
    assert not b.unstable
    state.apply_benchmark(doubtful("a3", "a", 2.0, 3, True))  # a newer run at the median, stable
    (a, _) = sorted(state.candidates(ScopeKey("s", C1)), key=lambda c: c.trial_key_hash)
    assert a.benchmark_run_id == "a3" and not a.unstable


def test_runs_without_the_flag_are_taken_as_stable() -> None:
    state = SelectionState(cfg())
    state.apply_trial(trial("a", 0.9))
    state.apply_benchmark(bench("a0", "a", 1.0, 0))  # a legacy run: no latency_batch_1_stable
    (only,) = state.candidates(ScopeKey("s", C1))
    assert not only.unstable


@pytest.mark.parametrize("policy", ["constraint", "weighted", "tolerance"])
def test_unstable_candidates_are_out_unless_let_in(policy: str) -> None:
    fast_but_unstable = replace_unstable(cand("a", 0.9, 1.0))
    steady = cand("b", 0.9, 2.0)
    assert [c.trial_key_hash for c in rank([fast_but_unstable, steady], cfg(selection={"policy": policy}))] == ["b"]
    assert rank([fast_but_unstable], cfg(selection={"policy": policy})) == []
    let_in = cfg(selection={"policy": policy, "include_unstable": True})
    ranked = rank([fast_but_unstable, steady], let_in)
    assert [c.trial_key_hash for c in ranked] == ["a", "b"] and ranked[0].unstable
    # an older file's benchmark.exclude_unstable: false means the same as include_unstable: true
    assert rank([fast_but_unstable, steady], cfg(selection={"policy": policy}, benchmark={"exclude_unstable": False}))


def replace_unstable(c: Candidate) -> Candidate:
    return replace(c, unstable=True, doubt="unstable")


def test_a_change_of_doubt_alone_is_published() -> None:
    from podium.core.decision import Channel, decide, view_of_selection
    from podium.core.selection import Selection

    steady = cand("a", 0.9, 1.0)
    before = Selection("s", C1, steady, (steady,))
    after = Selection("s", C1, replace_unstable(steady), (replace_unstable(steady),))
    decision = decide(view_of_selection(before), after, Channel("s", None, "weighted", "median"))
    assert decision is not None and decision.reason == "figures_changed"
    assert decision.view is not None and decision.view.unstable_candidates == 1
    other = cand("b", 0.5, 9.0)
    with_other = Selection("s", C1, steady, (steady, replace_unstable(other)))
    assert (
        decide(
            view_of_selection(Selection("s", C1, steady, (steady, other))),
            with_other,
            Channel("s", None, "weighted", "median"),
        ).reason
        == "candidates_changed"
    )
