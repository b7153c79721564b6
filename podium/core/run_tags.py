"""The tags of a benchmark run, built in one place from the identity (DESIGN.md, MLflow conventions)."""

from __future__ import annotations

from podium.core.identity import BenchmarkIdentity
from podium.core.records import Champion
from podium.core.tags import TagsRegistry


def benchmark_run_tags(
    registry: TagsRegistry,
    identity: BenchmarkIdentity,
    champion: Champion,
    *,
    backend: str,
    target: str,
    worker: str,
    device: str | None = None,
    fencing_token: int | None = None,
) -> dict[str, str]:
    b = registry.benchmark
    tags = {
        registry.stage.key: registry.stage.benchmark,
        b.key: identity.key,
        registry.grouping.study_key_hash: champion.study_key_hash,
        registry.grouping.trial_key_hash: champion.trial_key_hash,
        b.config_hash: identity.config_hash,
        b.champion_run_id: identity.champion_run_id,
        b.data_fp: identity.data_fp,
        b.eval_fp: identity.eval_fp,
        b.key_version: str(identity.version),
        b.backend: backend,
        b.target: target,
        b.worker: worker,
    }
    if device is not None:
        tags[b.device] = device
    if fencing_token is not None:
        tags[b.fencing_token] = str(fencing_token)
    return tags


def identity_for(champion: Champion, config_hash: str) -> BenchmarkIdentity:
    """The identity of benchmarking ``champion`` under a config: the only road to a key."""
    return BenchmarkIdentity(
        champion_run_id=champion.run_id,
        data_fp=champion.data_fp,
        eval_fp=champion.eval_fp,
        config_hash=config_hash,
    )
