"""Serving-config search on hand-made measurement tables: the grid, quick vs exhaustive, and the winner."""

from __future__ import annotations

import itertools

import pytest

from podium.core.sla import LoadPoint, best_at_sla
from podium.core.tuning import (
    SearchSpace,
    ServingConfig,
    Trial,
    choose,
    exhaustive,
    quick,
    search,
    search_many,
)
from podium.errors import TuningError

SLA_MS = 20.0
SPACE = SearchSpace(instance_count=(1, 2, 3), max_batch_size=(1, 8), dynamic_batching=(False, True))


def curve(peak: float, p99_at_peak: float) -> list[LoadPoint]:
    """Concurrency 1, 2, 4: throughput rises to ``peak`` while p99 grows to ``p99_at_peak``."""
    return [
        LoadPoint("c1", peak / 4, p99_at_peak / 4),
        LoadPoint("c2", peak / 2, p99_at_peak / 2),
        LoadPoint("c4", peak, p99_at_peak),
    ]


def unimodal(c: ServingConfig) -> list[LoadPoint]:
    """Best at 2 instances, batch 8, dynamic batching on; worse the further a config is from it, per dimension."""
    score = (
        400.0
        - 60 * abs(c.instance_count - 2)
        - (0 if c.max_batch_size == 8 else 100)
        - (0 if c.dynamic_batching else 80)
    )
    return curve(score, 10.0)


class Table:
    """A measurement function reading a table of load curves, counting what it was asked."""

    def __init__(self, curves):
        self.curves = curves
        self.asked: list[ServingConfig] = []
        self.batches: list[list[ServingConfig]] = []

    def __call__(self, config: ServingConfig) -> Trial:
        self.asked.append(config)
        found = best_at_sla([self.curves(config)], SLA_MS)
        return Trial(config, found.throughput_per_s if found else None)

    def many(self, configs) -> list[Trial]:
        """What a spread search asks: several configs at once (each one measured as alone)."""
        self.batches.append(list(configs))
        return [self(c) for c in configs]


def test_quick_and_exhaustive_pick_the_same_winner_on_a_unimodal_grid() -> None:
    full, fast = Table(unimodal), Table(unimodal)
    a, b = exhaustive(SPACE, full.many, SLA_MS), quick(SPACE, fast.many, SLA_MS)
    assert a.winner is not None and b.winner is not None
    assert a.winner.config == b.winner.config == ServingConfig(2, 8, True, 0)
    assert a.winner.throughput_at_sla == 400.0
    assert len(full.asked) == 12 and len(a.trials) == 12
    # each config measured once, and quick mode measures fewer
    assert len(set(fast.asked)) == len(fast.asked) == len(b.trials) < 12
    assert fast.asked[0] == SPACE.start() == ServingConfig(1, 1, False, 0)


def test_a_config_whose_p99_never_meets_the_budget_never_wins() -> None:
    def curves(c: ServingConfig) -> list[LoadPoint]:
        if c == ServingConfig(3, 8, True, 0):  # by far the highest throughput, but even c1 is over the budget
            return curve(10_000.0, 4 * SLA_MS + 4)
        return unimodal(c)

    for mode in ("quick", "exhaustive"):
        found = search(SPACE, mode, Table(curves), SLA_MS)
        assert found.winner is not None and found.winner.config == ServingConfig(2, 8, True, 0), mode
        if mode == "exhaustive":  # it was measured, and lost
            assert [t.meets_sla for t in found.trials if t.config == ServingConfig(3, 8, True, 0)] == [False]


def test_the_budget_is_met_between_levels_by_interpolation() -> None:
    # a config whose top level is over the budget still counts with the interpolated figure below it
    def curves(c: ServingConfig) -> list[LoadPoint]:
        return curve(800.0, 2 * SLA_MS) if c.instance_count == 3 else curve(300.0, 10.0)

    found = exhaustive(SPACE, Table(curves).many, SLA_MS)
    assert found.winner is not None and found.winner.config.instance_count == 3
    assert found.winner.throughput_at_sla == pytest.approx(400.0)  # c2 (400/s, 20 ms) meets it exactly


def test_no_config_meeting_the_budget_is_a_clear_error() -> None:
    with pytest.raises(TuningError, match="none of the 12 serving configs met the p99 budget of 20 ms") as raised:
        exhaustive(SPACE, Table(lambda c: curve(100.0, 4 * SLA_MS + 1)).many, SLA_MS)
    assert "--sla-p99-ms" in str(raised.value) and "\n" not in str(raised.value)
    slow = Trial(ServingConfig(2, 8, True), None)
    failed = [Trial(SPACE.start(), None, error="refused"), slow]
    with pytest.raises(TuningError, match=r"\(1 failed to load or measure\)"):
        choose(failed, SLA_MS)
    # all of them failed: the budget is not the problem, the first failure is said
    with pytest.raises(TuningError, match=r"every one of the 1 serving configs failed .*i1-b1-nodyn: refused$"):
        choose(failed[:1], SLA_MS)


def test_a_config_that_failed_never_wins_and_ties_go_to_the_cheaper_config() -> None:
    a, b, c = ServingConfig(1, 8, False), ServingConfig(2, 8, False), ServingConfig(1, 1, True, 100)
    assert choose([Trial(b, 500.0), Trial(a, 500.0)], SLA_MS).config == a
    assert choose([Trial(c, 900.0, error="out of memory"), Trial(b, 100.0)], SLA_MS).config == b
    assert choose(
        [Trial(ServingConfig(1, 8, True, 100), 5.0), Trial(ServingConfig(1, 8, True, 0), 5.0)], SLA_MS
    ).config == (ServingConfig(1, 8, True, 0))


def test_the_grid_holds_each_distinct_config_once() -> None:
    space = SearchSpace((1, 2), (1, 8, 8), (False, True), (0, 100))
    configs = space.configs()
    # without dynamic batching the queue delay means nothing: 2 x 2 x (1 + 2)
    assert len(configs) == len(set(configs)) == 12
    assert ServingConfig(1, 1, False, 0) in configs and all(
        c.max_queue_delay_us == 0 for c in configs if not c.dynamic_batching
    )
    assert space.along(ServingConfig(1, 8, False), "max_queue_delay_us") == [ServingConfig(1, 8, False)]
    assert space.along(ServingConfig(1, 8, True), "max_queue_delay_us") == [
        ServingConfig(1, 8, True, 0),
        ServingConfig(1, 8, True, 100),
    ]
    assert [c.label for c in (ServingConfig(2, 8, True, 100), ServingConfig(1, 1, False))] == [
        "i2-b8-dyn100",
        "i1-b1-nodyn",
    ]


def test_quick_mode_on_every_unimodal_start_finds_the_peak() -> None:
    # whichever value each dimension starts from, coordinate descent reaches the one peak
    for order in itertools.product(((1, 2, 3), (3, 2, 1)), ((1, 8), (8, 1)), ((False, True), (True, False))):
        space = SearchSpace(*order)
        found = quick(space, Table(unimodal).many, SLA_MS)
        assert found.winner is not None and found.winner.config == ServingConfig(2, 8, True, 0), order


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instance_count": ()}, "instance_count needs at least one value"),
        ({"max_batch_size": (0, 8)}, r"max_batch_size values must be whole numbers >= 1, got \[0, 8\]"),
        ({"max_queue_delay_us": (-1,)}, "max_queue_delay_us values must be whole numbers >= 0"),
    ],
)
def test_a_bad_space_fails_naming_the_dimension(kwargs: dict, message: str) -> None:
    with pytest.raises(TuningError, match=message):
        SearchSpace(**kwargs)


def test_every_max_batch_size_must_take_the_load_batch() -> None:
    SearchSpace(max_batch_size=(4, 8)).check_batch(4)
    with pytest.raises(TuningError, match=r"max_batch_size \[1\] is below the load's batch size 4"):
        SearchSpace(max_batch_size=(1, 8)).check_batch(4)
    with pytest.raises(TuningError, match="unknown search mode 'fast'"):
        search(SPACE, "fast", Table(unimodal), SLA_MS)


def test_quick_mode_passes_over_the_dimensions_until_nothing_moves() -> None:
    # more instances only pay once batching is on: the first pass ends at (1, 8, on), the second finds 2 instances
    table = {ServingConfig(1, 8, False): 150.0, ServingConfig(1, 8, True): 200.0, ServingConfig(2, 8, True): 300.0}

    def curves(c: ServingConfig) -> list[LoadPoint]:
        return curve(table.get(c, 50.0 if c.instance_count == 3 else 100.0), 10.0)

    fast = Table(curves)
    found = quick(SPACE, fast.many, SLA_MS)
    assert found.winner is not None and found.winner.config == ServingConfig(2, 8, True, 0)
    assert exhaustive(SPACE, Table(curves).many, SLA_MS).winner == found.winner


def test_a_spread_search_asks_for_each_step_at_once_and_decides_as_one_at_a_time() -> None:
    """Exhaustive mode asks for the whole grid in one batch, quick mode for one dimension's new values at a time;
    the configs measured, their order and the winner are those of the search measuring one config at a time."""
    for mode in ("exhaustive", "quick"):
        for curves in (unimodal, lambda c: curve(100.0 * c.instance_count + c.max_batch_size, 4.0 * c.instance_count)):
            alone, spread = Table(curves), Table(curves)
            one = search(SPACE, mode, alone, SLA_MS)
            many = search_many(SPACE, mode, spread.many, SLA_MS)
            assert spread.asked == alone.asked and [t.config for t in many.trials] == alone.asked
            assert many.winner == one.winner
            assert all(len(set(b)) == len(b) for b in spread.batches)  # a config never twice in one step
            assert len(spread.asked) == len(set(spread.asked))  # nor in two
            if mode == "exhaustive":
                assert spread.batches == [SPACE.configs()]
            else:
                assert spread.batches[0] == [SPACE.start()] and max(map(len, spread.batches)) > 1


def test_a_measurer_that_answers_for_other_configs_is_refused() -> None:
    def wrong(configs):
        return [Trial(ServingConfig(9, 9, False), 1.0) for _ in configs]

    with pytest.raises(TuningError, match="asked for 12 configs"):
        search_many(SPACE, "exhaustive", wrong, SLA_MS)
