"""A benchmark request that asks for a serving-config search (``benchmarking.tune``): what the config accepts and
refuses, what it does to the config hash, and what the run holds afterwards (through the store port, in memory);
tests/integration/test_tune.py runs it against a real tritonserver."""

from __future__ import annotations

from typing import Any

import pytest

from podium.core.config import BenchmarkConfig
from podium.core.identity import benchmark_config_hash, measurement_settings
from podium.core.tuning import ServingConfig, Trial
from podium.core.validation import parse_model
from podium.errors import ConfigError
from podium.measurement.lifecycle import finish_with_results, record_summary
from podium.measurement.measure import Measured
from podium.measurement.tune import ConfigOutcome, SearchRecord
from podium.testing import MemoryRunStore

TRITON = {"backend": "triton", "triton": {"deploy": "python"}}
LOAD = {"load": {"concurrency": [1, 4], "sla_p99_ms": 50}}


def config(**benchmarking: Any) -> BenchmarkConfig:
    return parse_model(BenchmarkConfig, {"benchmarking": benchmarking}, "benchmark.yaml")


def test_a_search_is_off_by_default_and_its_defaults_are_a_small_grid() -> None:
    assert BenchmarkConfig().benchmarking.tune is None
    tune = config(**TRITON, **LOAD, tune={}).benchmarking.tune
    assert tune is not None and tune.mode == "quick"
    assert [c.label for c in tune.space().configs()] == ["i1-b8-dyn0", "i1-b8-nodyn", "i2-b8-dyn0", "i2-b8-nodyn"]


@pytest.mark.parametrize(
    ("benchmarking", "said"),
    [
        ({"tune": {}}, "needs backend: triton with triton.deploy libtorch, python or onnx (got backend: local"),
        (
            {"backend": "triton", "triton": {"deploy": "none", "model_name": "m"}, **LOAD, "tune": {}},
            "triton.deploy: none",
        ),
        ({**TRITON, "tune": {}}, "set load.concurrency (e.g. [1, 4]) and load.sla_p99_ms"),
        ({**TRITON, "load": {"concurrency": [4]}, "tune": {}}, "load.sla_p99_ms"),
        ({**TRITON, **LOAD, "tune": {"instance_count": [0]}}, "instance_count values must be whole numbers >= 1"),
        ({**TRITON, **LOAD, "tune": {"mode": "random"}}, "quick"),
        ({**TRITON, **LOAD, "tune": {"max_batch_size": []}}, "max_batch_size needs at least one value"),
        (
            {
                **TRITON,
                "load": {"concurrency": [1], "sla_p99_ms": 50, "batch_size": 8},
                "tune": {"max_batch_size": [4]},
            },
            "max_batch_size [4] is below the load's batch size 8",
        ),
        ({**TRITON, **LOAD, "tune": {"instances": [1]}}, "instances"),
    ],
)
def test_a_search_that_cannot_run_is_refused_when_the_config_is_read(benchmarking: dict, said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config(**benchmarking)
    assert said in " ".join(str(refused.value).split()) and "benchmark.yaml" in str(refused.value)


def test_the_search_is_part_of_the_config_hash_only_when_asked_for() -> None:
    plain = config(**TRITON, **LOAD).benchmarking
    searched = config(**TRITON, **LOAD, tune={}).benchmarking
    other = config(**TRITON, **LOAD, tune={"mode": "exhaustive"}).benchmarking
    assert "tune" not in measurement_settings(plain, "x")  # configs without a search keep their hashes
    hashes = {benchmark_config_hash(c, "x") for c in (plain, searched, other)}
    assert len(hashes) == 3
    assert benchmark_config_hash(searched, "x") == benchmark_config_hash(
        config(**TRITON, **LOAD, tune={}).benchmarking, "x"
    )


def outcome(label: str, throughput: float | None, error: str | None = None) -> ConfigOutcome:
    i, b, _ = label.split("-")
    serving = ServingConfig(int(i[1:]), int(b[1:]), True, 0)
    metrics = {} if error else {"load_c4_throughput_per_s": throughput or 1.0}
    return ConfigOutcome(Trial(serving, throughput, error), {"name": f"m-{label}"}, metrics, {"sla": {}}, 1.0, "cpu")


def measured_with(search: SearchRecord) -> Measured:
    return Measured(
        {"latency_batch_1_p50_ms": 2.0}, {"schema_version": 1, "tune": search.table}, "cpu", "b1:stable", search
    )


def benchmark_run(store: MemoryRunStore) -> str:
    run_id, _ = store.start_benchmark_run({"code.stage": "benchmark"})
    return run_id


def test_each_config_is_a_child_of_the_benchmark_run_which_holds_the_winner() -> None:
    store = MemoryRunStore()
    run_id = benchmark_run(store)
    configs = [outcome("i1-b8-dyn0", 120.0), outcome("i2-b8-dyn0", 90.0), outcome("i2-b1-dyn0", None, "refused")]
    table = {"mode": "exhaustive", "winner": "i1-b8-dyn0", "configs": [o.row() for o in configs]}
    search = SearchRecord(configs, table, configs[0], 'name: "m"\nmax_batch_size: 8\n')
    measured = measured_with(search)
    record_summary(store, run_id, BenchmarkConfig(), measured)
    finish_with_results(store, run_id, BenchmarkConfig(), measured)

    run = store.run(run_id)
    assert run.status == "FINISHED" and run.tags["code.tune.winner"] == "i1-b8-dyn0"
    assert run.artifacts["config.pbtxt"] == 'name: "m"\nmax_batch_size: 8\n'
    children = {
        r.tags["code.tune.config"]: r for r in store.runs.values() if r.tags.get("mlflow.parentRunId") == run_id
    }
    assert set(children) == {"i1-b8-dyn0", "i2-b8-dyn0", "i2-b1-dyn0"}
    assert all(c.tags["code.stage"] == "tune" and c.tags["code.tune.mode"] == "exhaustive" for c in children.values())
    assert children["i2-b1-dyn0"].status == "FAILED" and children["i1-b8-dyn0"].status == "FINISHED"
    rows = run.artifacts["benchmark.json"]["tune"]["configs"]
    assert {row["label"]: row["run_id"] for row in rows} == {label: c.run_id for label, c in children.items()}


def test_a_search_without_a_winner_keeps_its_configs_and_the_benchmark() -> None:
    store = MemoryRunStore()
    run_id = benchmark_run(store)
    configs = [outcome("i1-b8-dyn0", None)]
    why = "none of the 1 serving configs met the p99 budget of 1 ms"
    search = SearchRecord(
        configs, {"mode": "quick", "error": why, "configs": [o.row() for o in configs]}, None, None, why
    )
    measured = measured_with(search)
    record_summary(store, run_id, BenchmarkConfig(), measured)
    finish_with_results(store, run_id, BenchmarkConfig(), measured)
    run = store.run(run_id)
    assert run.status == "FINISHED" and "code.tune.winner" not in run.tags and "config.pbtxt" not in run.artifacts
    assert run.artifacts["benchmark.json"]["tune"]["error"] == why
    (child,) = [r for r in store.runs.values() if r.tags.get("mlflow.parentRunId") == run_id]
    assert child.status == "FINISHED" and child.tags["code.tune.config"] == "i1-b8-dyn0"


def test_the_readme_example_is_a_search_a_request_can_ask_for() -> None:
    import re

    import yaml

    from tests.conftest import REPO

    text = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text[text.index("### Serving-config search") :], re.S).group(1)
    tune = parse_model(BenchmarkConfig, yaml.safe_load(block), "README.md").benchmarking.tune
    assert tune is not None and len(tune.space().configs()) == 4
