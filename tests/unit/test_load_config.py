"""``benchmarking.load``: validation, the config hash, level and metric names."""

from __future__ import annotations

import pytest

from podium.core.config import BenchmarkingSection
from podium.core.identity import benchmark_config_hash
from podium.core.metric_names import load_level_name, load_metric
from podium.core.validation import parse_model
from podium.errors import ConfigError


def section(**load) -> BenchmarkingSection:
    return parse_model(BenchmarkingSection, {"load": load} if load else {}, "test")


def test_no_level_by_default_and_the_serial_hash_is_unchanged() -> None:
    plain = BenchmarkingSection()
    assert not plain.load.any
    # a load section with no level (only the budget or the thread cap set) measures what it did before
    assert benchmark_config_hash(section(max_in_flight=8), "fp") == benchmark_config_hash(plain, "fp")


@pytest.mark.parametrize(
    "load",
    [
        {"concurrency": [1, 2]},
        {"concurrency": [1, 4]},
        {"request_rate": [50]},
        {"concurrency": [1, 2], "sla_p99_ms": 20},
        {"concurrency": [1, 2], "batch_size": 4},
        {"request_rate": [50], "max_in_flight": 4},
    ],
)
def test_every_level_setting_enters_the_hash(load: dict) -> None:
    hashes = {
        benchmark_config_hash(BenchmarkingSection(), "fp"),
        benchmark_config_hash(section(concurrency=[1, 2]), "fp"),
        benchmark_config_hash(section(**load), "fp"),
    }
    assert len(hashes) == (2 if load == {"concurrency": [1, 2]} else 3)


def test_levels_are_sorted_unique_and_positive() -> None:
    cfg = section(concurrency=[4, 1, 4], request_rate=[100, 50.5])
    assert cfg.load.concurrency == [1, 4] and cfg.load.request_rate == [50.5, 100.0]
    for bad in ({"concurrency": [0]}, {"concurrency": []}, {"request_rate": [-1]}, {"sla_p99_ms": 0}):
        with pytest.raises(ConfigError, match="load"):
            section(**bad)


def test_level_and_metric_names() -> None:
    assert load_level_name(concurrency=4) == "c4"
    assert load_level_name(request_rate=100.0) == "r100"
    assert load_level_name(request_rate=12.5) == "r12p5"
    assert load_metric("c4", "p99_ms") == "load_c4_p99_ms"
    with pytest.raises(ValueError, match="exactly one"):
        load_level_name(4, 100.0)
