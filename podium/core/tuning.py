"""Serving-config search (pure): which Triton config serves a model with the highest throughput at a p99 budget.

A config is one choice of instance count, ``max_batch_size``, dynamic batching on or off, and the dynamic
batcher's ``max_queue_delay_microseconds`` (meaningless without dynamic batching: such configs carry 0, so the
grid holds each distinct config once). The objective is the throughput at the budget
(:mod:`podium.core.sla`) of the config's load levels; a config none of whose levels meets the budget, or that
failed to load, ranks below every one that does.

``exhaustive`` measures every config. ``quick`` is coordinate descent, like Model Analyzer's quick search:
start from the first value of every dimension, measure every value of one dimension with the others fixed,
move to the best if it beats the current config, go on to the next dimension, and stop after a whole pass over
the dimensions makes no move. On a grid whose objective is unimodal along each dimension both pick the same
config; quick mode measures fewer.

Ties (equal throughput) go to the cheaper config: fewer instances, then a smaller ``max_batch_size``, then no
dynamic batching, then a shorter queue delay.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from podium.errors import TuningError

Mode = Literal["quick", "exhaustive"]
MODES: tuple[Mode, ...] = ("quick", "exhaustive")
#: The winning config's label on a search's parent run (``podium tune``), and on the benchmark run a request's
#: search followed (``benchmarking.tune``).
WINNER_TAG = "code.tune.winner"
#: The dimensions of the search, in the order quick mode visits them.
DIMENSIONS = ("instance_count", "max_batch_size", "dynamic_batching", "max_queue_delay_us")


@dataclass(frozen=True)
class ServingConfig:
    """One Triton serving config of a model."""

    instance_count: int
    max_batch_size: int
    dynamic_batching: bool
    #: The dynamic batcher's ``max_queue_delay_microseconds``; 0 without dynamic batching.
    max_queue_delay_us: int = 0

    @property
    def label(self) -> str:
        """A short name for tables, tags and run names: ``i2-b8-dyn100`` or ``i1-b1-nodyn``."""
        batching = f"dyn{self.max_queue_delay_us}" if self.dynamic_batching else "nodyn"
        return f"i{self.instance_count}-b{self.max_batch_size}-{batching}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_count": self.instance_count,
            "max_batch_size": self.max_batch_size,
            "dynamic_batching": self.dynamic_batching,
            "max_queue_delay_us": self.max_queue_delay_us,
        }

    def cost(self) -> tuple[int, int, bool, int]:
        """What the config spends, lowest first: the tie-break between equal throughputs."""
        return (self.instance_count, self.max_batch_size, self.dynamic_batching, self.max_queue_delay_us)


def _values(name: str, values: Iterable[Any], minimum: int) -> tuple[Any, ...]:
    """The values of one dimension, duplicates dropped (first kept); each checked."""
    out: list[Any] = []
    for v in values:
        if name != "dynamic_batching" and (isinstance(v, bool) or not isinstance(v, int) or v < minimum):
            raise TuningError(f"{name} values must be whole numbers >= {minimum}, got {list(values)}")
        if v not in out:
            out.append(v)
    if not out:
        raise TuningError(f"{name} needs at least one value to search")
    return tuple(out)


@dataclass(frozen=True)
class SearchSpace:
    """The values to try per dimension; the first of each is quick mode's starting point."""

    instance_count: tuple[int, ...] = (1,)
    max_batch_size: tuple[int, ...] = (8,)
    dynamic_batching: tuple[bool, ...] = (False,)
    max_queue_delay_us: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for name, minimum in (("instance_count", 1), ("max_batch_size", 1), ("max_queue_delay_us", 0)):
            object.__setattr__(self, name, _values(name, getattr(self, name), minimum))
        object.__setattr__(self, "dynamic_batching", _values("dynamic_batching", map(bool, self.dynamic_batching), 0))

    def _config(self, i: int, b: int, dyn: bool, delay: int) -> ServingConfig:
        return ServingConfig(i, b, dyn, delay if dyn else 0)

    def start(self) -> ServingConfig:
        return self._config(*(getattr(self, d)[0] for d in DIMENSIONS))

    def configs(self) -> list[ServingConfig]:
        """Every distinct config of the grid, in a fixed order (the dimensions' product, first varying last)."""
        grid = itertools.product(*(getattr(self, d) for d in DIMENSIONS))
        return list(dict.fromkeys(self._config(*values) for values in grid))

    def along(self, config: ServingConfig, dimension: str) -> list[ServingConfig]:
        """The configs that differ from ``config`` in ``dimension`` only (``config`` itself included)."""
        if dimension not in DIMENSIONS:
            raise TuningError(f"unknown dimension {dimension!r}; use one of {', '.join(DIMENSIONS)}")
        current = config.as_dict()
        moved = (current | {dimension: v} for v in getattr(self, dimension))
        return list(dict.fromkeys(self._config(*c.values()) for c in moved))

    def check_batch(self, batch_size: int) -> None:
        """Every ``max_batch_size`` must take the load's requests of ``batch_size``."""
        small = [b for b in self.max_batch_size if b < batch_size]
        if small:
            raise TuningError(
                f"max_batch_size {small} is below the load's batch size {batch_size}: such a server refuses every "
                "request; drop those values or lower benchmarking.load.batch_size"
            )


@dataclass(frozen=True)
class Trial:
    """One measured config: its throughput at the budget (None: no level met it), or why it failed."""

    config: ServingConfig
    throughput_at_sla: float | None
    error: str | None = None

    @property
    def meets_sla(self) -> bool:
        return self.throughput_at_sla is not None and self.error is None


def rank(trial: Trial) -> tuple[bool, float, tuple[int, int, int, int]]:
    """Higher is better: meeting the budget, then throughput, then the cheaper config."""
    i, b, dyn, delay = trial.config.cost()
    throughput = (trial.throughput_at_sla or 0.0) if trial.meets_sla else 0.0
    return (trial.meets_sla, throughput, (-i, -b, -int(dyn), -delay))


def choose(trials: Sequence[Trial], sla_p99_ms: float) -> Trial:
    """The winner: the config with the highest throughput at the budget (ties: the cheaper one)."""
    if not trials:
        raise TuningError("no serving config was measured")
    best = max(trials, key=rank)
    failures = [t for t in trials if t.error]
    if len(failures) == len(trials):
        raise TuningError(
            f"every one of the {len(trials)} serving configs failed to load or measure; "
            f"{failures[0].config.label}: {failures[0].error}"
        )
    if not best.meets_sla:
        failed = len(failures)
        raise TuningError(
            f"none of the {len(trials)} serving configs met the p99 budget of {sla_p99_ms:g} ms"
            + (f" ({failed} failed to load or measure)" if failed else "")
            + ": raise --sla-p99-ms, try lighter load levels (--concurrency) or more instances"
        )
    return best


@dataclass
class Search:
    """What a search measured (in order) and the config it picked."""

    mode: Mode
    trials: list[Trial]
    winner: Trial


#: Measures configs and gives their trials in the order asked: one after another on one server, or all at once
#: over the workers of a queue (each on its own server).
MeasureMany = Callable[[Sequence[ServingConfig]], Sequence[Trial]]


class _Measured:
    """Each config measured once; what can be measured together (a whole grid, one dimension's values) is asked
    for together, in the order the one-at-a-time search would have asked."""

    def __init__(self, measure_many: MeasureMany):
        self.measure_many = measure_many
        self.trials: dict[ServingConfig, Trial] = {}

    def __call__(self, configs: Sequence[ServingConfig]) -> list[Trial]:
        new = [c for c in dict.fromkeys(configs) if c not in self.trials]
        if new:
            trials = list(self.measure_many(new))
            if [t.config for t in trials] != new:
                raise TuningError(f"asked for {len(new)} configs, got trials of {[t.config.label for t in trials]}")
            self.trials.update(zip(new, trials, strict=True))
        return [self.trials[c] for c in configs]


def exhaustive(space: SearchSpace, measure_many: MeasureMany, sla_p99_ms: float) -> Search:
    measured = _Measured(measure_many)
    measured(space.configs())
    trials = list(measured.trials.values())
    return Search("exhaustive", trials, choose(trials, sla_p99_ms))


def quick(space: SearchSpace, measure_many: MeasureMany, sla_p99_ms: float) -> Search:
    measured = _Measured(measure_many)
    (current,) = measured([space.start()])
    moved = True
    while moved:
        moved = False
        for dimension in DIMENSIONS:
            best = max(measured(space.along(current.config, dimension)), key=rank)
            if rank(best) > rank(current):
                current, moved = best, True
    trials = list(measured.trials.values())
    return Search("quick", trials, choose(trials, sla_p99_ms))


def search_many(space: SearchSpace, mode: str, measure_many: MeasureMany, sla_p99_ms: float) -> Search:
    """Run the search of ``mode`` (``quick`` or ``exhaustive``), measuring each config at most once and asking
    for every config it can decide without (exhaustive: the whole grid; quick: one dimension's values) at once."""
    if mode == "quick":
        return quick(space, measure_many, sla_p99_ms)
    if mode == "exhaustive":
        return exhaustive(space, measure_many, sla_p99_ms)
    raise TuningError(f"unknown search mode {mode!r}; use quick or exhaustive")


def search(space: SearchSpace, mode: str, measure: Callable[[ServingConfig], Trial], sla_p99_ms: float) -> Search:
    """:func:`search_many` measuring one config at a time."""
    return search_many(space, mode, lambda configs: [measure(c) for c in configs], sla_p99_ms)
