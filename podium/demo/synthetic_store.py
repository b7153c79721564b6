"""Write an MLflow store the way training code following DESIGN.md would, with the plain MLflow client.

Used by the README's first command (a small example store), by tests, and by ``bench/`` (10,000
benchmark runs over 1,000 trials). Nothing here uses podium's own MLflow adapter on purpose: the store
must be readable by podium because it follows the conventions, not because podium wrote it.

    python -m podium.demo.synthetic_store .podium/example --studies 2 --trials 6 --benchmarks 3
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from podium.core.config import BenchmarkingSection
from podium.core.identity import (
    benchmark_config_hash,
    build_benchmark_key,
    study_key_hash,
    synthetic_input_fingerprint,
    trial_key_hash,
)
from podium.core.tags import TagsRegistry

BACKBONES = ("tiny-bert", "mini-lstm", "distil-cnn", "nano-gpt")


@dataclass
class StoreSpec:
    studies: int = 2
    trials_per_study: int = 6
    benchmarks_per_trial: int = 3
    with_refit: bool = True
    #: Write benchmark runs without the benchmark_key tag, as older code did.
    legacy: bool = False
    seed: int = 0
    experiment: str = "training"
    batch_sizes: tuple[int, ...] = (1,)
    #: Trials (by index in each study) whose benchmark runs never settled: flagged unstable, their mean
    #: pulled up by outliers far above their p50.
    unstable_trials: tuple[int, ...] = ()
    tags: TagsRegistry = field(default_factory=TagsRegistry)


@dataclass
class GeneratedStore:
    tracking_uri: str
    experiment_id: str
    studies: list[str]
    trial_runs: int = 0
    refit_runs: int = 0
    benchmark_runs: int = 0


def sqlite_uri(folder: Path | str) -> str:
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def generate_store(tracking_uri: str, spec: StoreSpec, artifact_location: str | None = None) -> GeneratedStore:
    rng = random.Random(spec.seed)
    client = MlflowClient(tracking_uri=tracking_uri)
    t = spec.tags
    if artifact_location is None and tracking_uri.startswith("sqlite:///"):
        artifact_location = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    exp = client.get_experiment_by_name(spec.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(spec.experiment, artifact_location)
    config_hash = benchmark_config_hash(
        BenchmarkingSection(batch_sizes=list(spec.batch_sizes)), synthetic_input_fingerprint(0)
    )
    out = GeneratedStore(tracking_uri, exp_id, [])
    clock = int(time.time() * 1000) - 10_000_000

    def run(stage: str, tags: dict[str, str], metrics: dict[str, float], params: dict[str, str]) -> str:
        nonlocal clock
        clock += 1000
        r = client.create_run(exp_id, start_time=clock)
        all_tags = {t.stage.key: stage, **tags}
        client.log_batch(
            r.info.run_id,
            metrics=[Metric(k, v, clock, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in all_tags.items()],
        )
        client.set_terminated(r.info.run_id, "FINISHED", end_time=clock + 500)
        return r.info.run_id

    for s in range(spec.studies):
        study = study_key_hash(f"study-{spec.seed}-{s}", {"lr": [1e-5, 1e-3], "layers": [1, 4]})
        out.studies.append(study)
        for i in range(spec.trials_per_study):
            trial = trial_key_hash(study, {"trial_number": i})
            grouping = {t.grouping.study_key_hash: study, t.grouping.trial_key_hash: trial}
            fps = {t.fingerprint.data: "data-v1", t.fingerprint.eval: "eval-v1"}
            backbone = BACKBONES[i % len(BACKBONES)]
            f1 = round(rng.uniform(0.6, 0.95), 4)
            champion = run(t.stage.hpo_trial, grouping | fps, {"macro-f1": f1}, {"backbone": backbone})
            out.trial_runs += 1
            if spec.with_refit:
                champion = run(t.stage.refit, grouping | fps, {"macro-f1": f1}, {"backbone": backbone})
                out.refit_runs += 1
            base = rng.uniform(2.0, 40.0)
            key = build_benchmark_key(champion, "data-v1", "eval-v1", config_hash)
            for _ in range(spec.benchmarks_per_trial):
                bench_tags = dict(grouping)
                if not spec.legacy:
                    bench_tags |= {
                        t.benchmark.key: key,
                        t.benchmark.config_hash: config_hash,
                        t.benchmark.champion_run_id: champion,
                    }
                metrics: dict[str, float] = {}
                unstable = i in spec.unstable_trials
                for b in spec.batch_sizes:
                    lat = base * b**0.5 * rng.uniform(0.95, 1.10)
                    metrics |= {
                        f"latency_batch_{b}_ms": lat * (20.0 if unstable else 1.0),
                        f"latency_batch_{b}_p50_ms": lat * 0.98,
                        f"latency_batch_{b}_p99_ms": lat * 1.6,
                        f"throughput_batch_{b}_per_s": 1000.0 * b / lat,
                        f"latency_batch_{b}_stable": 0.0 if unstable else 1.0,
                    }
                run(t.stage.benchmark, bench_tags, metrics, {})
                out.benchmark_runs += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder for mlflow.db (created)")
    parser.add_argument("--studies", type=int, default=2)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--benchmarks", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the store already exists")
    args = parser.parse_args()
    if args.if_missing and (args.folder / "mlflow.db").exists():
        print(f"{args.folder / 'mlflow.db'} exists; leaving it as it is.")
        return
    spec = StoreSpec(
        studies=args.studies, trials_per_study=args.trials, benchmarks_per_trial=args.benchmarks, seed=args.seed
    )
    store = generate_store(sqlite_uri(args.folder), spec)
    print(
        f"Wrote {store.trial_runs} trial, {store.refit_runs} refit and {store.benchmark_runs} benchmark runs "
        f"to {store.tracking_uri}"
    )


if __name__ == "__main__":
    main()
