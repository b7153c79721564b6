"""The pure checks behind field reliability: events against MLflow, clocks, Redis policy, queue envelopes."""

from __future__ import annotations

import math

import pytest

from podium.broker.transport import envelope_problem
from podium.coordination.commit import committed_run, pending_run
from podium.coordination.policy import RedisPolicy, problems
from podium.core.identity import build_benchmark_key
from podium.core.messages import BenchmarkResult
from podium.core.records import BenchmarkRecord
from podium.core.verification import (
    RunFacts,
    SkewBounds,
    claim_problem,
    key_problem,
    metrics_problem,
    run_problem,
    trusted_start,
)

CONFIG = "c" * 64
KEY = build_benchmark_key("champ", "d", "e", CONFIG)
RECORD = BenchmarkRecord("run1", 1_000_000, "s" * 64, "t" * 64, KEY, CONFIG, {"latency_batch_1_ms": 2.0})
FACTS = RunFacts("FINISHED", RECORD, "champ", "d", "e", "1")


def event(**changes) -> BenchmarkResult:
    """A result event naming RECORD's run (as the aggregator checks it: the message itself)."""
    stated = {"run_id": "run1", "benchmark_key": KEY, "study_key_hash": "s" * 64, "trial_key_hash": "t" * 64}
    return BenchmarkResult(
        **{**stated, "config_hash": CONFIG, **changes},
        start_time=1_000_000,
        champion_run_id="champ",
        metrics={"latency_batch_1_ms": 2.0},
        device="cpu",
        worker="w1",
        fencing_token=1,
    )


def test_a_consistent_finished_run_backs_its_event() -> None:
    assert run_problem("run1", FACTS) is None
    assert claim_problem(event(), RECORD) is None


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (None, "no run run1 in MLflow"),
        (FACTS.__class__("RUNNING", RECORD, "champ", "d", "e", "1"), "is RUNNING in MLflow, not FINISHED"),
        (FACTS.__class__("FINISHED", None, "champ", "d", "e", "1"), "no study/trial grouping tags"),
        (FACTS.__class__("FINISHED", RECORD, "other", "d", "e", "1"), "does not match its parts"),
        (FACTS.__class__("FINISHED", RECORD, "champ", "d", "e", "x"), "does not match its parts"),
        (FACTS.__class__("FINISHED", RECORD, "bad value!", "d", "e", "1"), "does not match its parts"),
    ],
)
def test_runs_that_cannot_back_an_event(facts, expected: str) -> None:
    assert expected in run_problem("run1", facts)


def test_the_key_rule_every_path_shares() -> None:
    """``podium select`` and a rebuild leave out what the live check refuses for its key. A legacy run (no key)
    and a run written without its parts' tags have nothing to check; no event can name a legacy run."""
    legacy = RunFacts("FINISHED", BenchmarkRecord("old", 1, "s" * 64, "t" * 64, None, None, {}), None, None, None, None)
    assert key_problem(FACTS) is None and key_problem(legacy) is None
    unrecorded = RunFacts("FINISHED", RECORD, "champ", None, "e", None)  # written without its parts' tags
    assert key_problem(unrecorded) is None and run_problem("run1", unrecorded) is None
    assert "does not match its parts" in key_problem(RunFacts("FINISHED", RECORD, "other", "d", "e", "1"))
    assert "a legacy run, which no result event names" in run_problem("old", legacy)


@pytest.mark.parametrize("field", ["benchmark_key", "study_key_hash", "trial_key_hash", "config_hash"])
def test_an_event_that_disagrees_with_mlflow(field: str) -> None:
    claim = event(**{field: "9" * 64})
    assert f"the event's {field} '{'9' * 64}' differs from MLflow's" in claim_problem(claim, RECORD)


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, -math.inf])
def test_metrics_must_be_finite_and_non_negative(value: float) -> None:
    assert f"run r: metric x = {value!r} is not a finite non-negative number" == metrics_problem(
        {"m": 1.0, "x": value}, "r"
    )
    assert metrics_problem({"m": 0.0, "x": 1e9}, "r") is None
    # only the metrics named are read (those a fold uses), under the name of what is checked
    assert metrics_problem({"m": 1.0, "x": value}, "r", "benchmark run", ["m", "absent"]) is None
    assert metrics_problem({"m": 1.0, "x": value}, "r", "benchmark run", ["x"]).startswith("benchmark run r: metric x")


CLOCK = SkewBounds(max_skew_ms=300_000, max_benchmark_ms=3_600_000)


@pytest.mark.parametrize(
    ("offset_ms", "believed"),
    [
        (0, True),
        (300_000, True),  # the skew allowed ahead of the commit
        (300_001, False),
        (-3_900_000, True),  # the longest benchmark plus the skew before it
        (-3_900_001, False),
        (7_200_000, False),  # two hours ahead
    ],
)
def test_start_times_far_from_the_commit_are_replaced(offset_ms: int, believed: bool) -> None:
    entry = 2_000_000_000_000
    record = BenchmarkRecord("r", entry + offset_ms, "s", "t", KEY, CONFIG)
    trusted, warning = trusted_start(record, entry, CLOCK)
    assert (warning is None) is believed
    assert trusted.start_time == (record.start_time if believed else entry)
    if not believed:
        assert "the writer's clock is skewed" in warning


def test_done_markers_pending_and_committed() -> None:
    assert committed_run(None) is None and pending_run(None) is None
    assert committed_run("run1") == "run1" and pending_run("run1") is None
    assert committed_run("pending:run1") is None and pending_run("pending:run1") == "run1"


@pytest.mark.parametrize(
    ("policy", "accept", "refused", "warned"),
    [
        (RedisPolicy("noeviction", 0, True), False, False, 0),
        (RedisPolicy("noeviction", 0, False), False, False, 1),  # AOF off
        (RedisPolicy("allkeys-lru", 1 << 30, True), False, True, 0),
        (RedisPolicy("volatile-lru", 1 << 30, True), False, True, 0),
        (RedisPolicy("allkeys-lru", 1 << 30, True), True, False, 1),
        (RedisPolicy(None, None, None), False, False, 1),  # INFO refused: cannot tell
    ],
)
def test_redis_policy(policy: RedisPolicy, accept: bool, refused: bool, warned: int) -> None:
    refusal, warnings = problems(policy, accept)
    assert (refusal is not None) is refused and len(warnings) == warned
    if refused:
        assert "PODIUM_ACCEPT_REDIS_EVICTION=true" in refusal and policy.maxmemory_policy in refusal


GOOD_ENVELOPE = {
    "body": "e30=",
    "headers": {"task": "podium.benchmark"},
    "properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "podium.cpu"}},
}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([1, 2], "a JSON list"),
        ({"body": ""}, "no properties object"),
        ({"properties": {"delivery_info": {}}}, "no delivery_tag"),
        ({"properties": {"delivery_tag": "t", "delivery_info": {"exchange": ""}}}, "no delivery_info"),
        ({**GOOD_ENVELOPE, "headers": [1]}, "headers is not an object"),
        ({**GOOD_ENVELOPE, "body": 5}, "body is not a string"),
    ],
)
def test_queue_items_that_are_not_envelopes(payload, expected: str) -> None:
    assert expected in envelope_problem(payload)
    assert envelope_problem(GOOD_ENVELOPE) is None
