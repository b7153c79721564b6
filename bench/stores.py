"""Large MLflow sqlite stores for benchmarks, generated once and cached outside the repository.

    store = cached_store(trials=1000, benchmarks_per_trial=10)  # 12,000 runs: 2,000 training + 10,000 benchmark

Runs are bulk-inserted through MLflow's own models (``tests/bulk_store.py``), with the tags and metrics podium's
workers and training helpers write, in 10 studies. Each benchmark call gets a fresh copy of the cached file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlflow import MlflowClient

from podium.core.identity import BenchmarkIdentity
from podium.core.records import Champion
from podium.core.run_tags import benchmark_run_tags
from podium.core.tags import TagsRegistry
from tests.bulk_store import RunRow, write_runs

CACHE = Path.home() / ".cache" / "podium" / "bench-stores"
STUDIES = 10
#: The metrics a podium benchmark run of batch sizes 1 and 8 carries (12, as the issue's baseline writes).
METRICS = [
    f"{name}_batch_{b}_{unit}"
    for b in (1, 8)
    for name, unit in (
        ("latency", "ms"),
        ("latency_p50", "ms"),
        ("latency_p90", "ms"),
        ("latency_p99", "ms"),
        ("latency_cv", "ratio"),
        ("throughput", "per_s"),
    )
]


def study_hash(s: int) -> str:
    return f"{s + 1:x}".rjust(64, "5")


def trial_hash(s: int, t: int) -> str:
    return f"{s:02x}{t:06x}".rjust(64, "7")


def cached_store(trials: int, benchmarks_per_trial: int, into: Path) -> str:
    """A copy of the cached store in ``into``; returns its sqlite URI."""
    source = CACHE / f"store-t{trials}-b{benchmarks_per_trial}.db"
    if not source.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = source.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        _generate(f"sqlite:///{partial}", trials, benchmarks_per_trial)
        partial.rename(source)
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, into / "mlflow.db")
    return f"sqlite:///{into / 'mlflow.db'}"


def _generate(uri: str, trials: int, benchmarks_per_trial: int) -> None:
    client = MlflowClient(uri)  # creates the schema
    training = client.create_experiment("training")
    benchmarks = client.create_experiment("podium-benchmarks")
    tags = TagsRegistry()
    rows: list[RunRow] = []
    start = 1_700_000_000_000
    per_study = max(1, trials // STUDIES)
    for s in range(STUDIES):
        for t in range(per_study):
            study, trial = study_hash(s), trial_hash(s, t)
            grouping = {tags.grouping.study_key_hash: study, tags.grouping.trial_key_hash: trial}
            for stage in (tags.stage.hpo_trial, tags.stage.refit):
                rows.append(RunRow(training, start, {tags.stage.key: stage, **grouping}, {"macro-f1": 0.5 + t / 1e4}))
                start += 1
            champion = Champion(rows[-1].run_id, study, trial, "data-v1", "eval-v1")
            for b in range(benchmarks_per_trial):
                identity = BenchmarkIdentity(champion.run_id, "data-v1", "eval-v1", f"{b:064x}")
                run_tags = benchmark_run_tags(
                    tags, identity, champion, backend="local", target="cpu", worker="bench", fencing_token=1
                )
                metrics = {m: 1.0 + (t * 31 + b) % 97 / 10 for m in METRICS}
                rows.append(RunRow(benchmarks, start, run_tags, metrics))
                start += 1
    write_runs(uri, rows)
