"""The tags registry: every MLflow tag name and stage value podium reads or writes, in one place.

Defaults follow DESIGN.md. A store written by older code (``code.study_key_hash``, stages ``hpo`` /
``hpo_refit``) is read by changing ``config/tags.yaml``, never the code.
"""

from __future__ import annotations

from pydantic import field_validator

from podium.core.config import StrictModel
from podium.core.safety import require_safe, require_safe_name


class _Names(StrictModel):
    @field_validator("*")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return require_safe_name(value, "tag name")


class GroupingTags(_Names):
    study_key_hash: str = "code.grouping.study_key_hash"
    trial_key_hash: str = "code.grouping.trial_key_hash"


class StageTags(StrictModel):
    key: str = "code.stage"
    hpo_trial: str = "hpo_trial"
    refit: str = "refit"
    benchmark: str = "benchmark"
    selection: str = "selection"

    @field_validator("key")
    @classmethod
    def _safe_key(cls, value: str) -> str:
        return require_safe_name(value, "stage tag name")

    @field_validator("hpo_trial", "refit", "benchmark", "selection")
    @classmethod
    def _safe_value(cls, value: str) -> str:
        return require_safe(value, "stage value")


class BenchmarkTags(_Names):
    key: str = "benchmark_key"
    config_hash: str = "code.benchmark.config_hash"
    champion_run_id: str = "code.benchmark.champion_run_id"
    data_fp: str = "code.benchmark.data_fp"
    eval_fp: str = "code.benchmark.eval_fp"
    key_version: str = "code.benchmark.key_version"
    backend: str = "code.benchmark.backend"
    device: str = "code.benchmark.device"
    target: str = "code.benchmark.target"
    worker: str = "code.benchmark.worker"
    fencing_token: str = "code.benchmark.fencing_token"
    stability: str = "code.benchmark.stability"
    error: str = "code.benchmark.error"


class FingerprintTags(_Names):
    """Tags of a champion run that say what data and evaluation produced it."""

    data: str = "code.fingerprint.data"
    eval: str = "code.fingerprint.eval"


class ModelTags(_Names):
    backbone_param: str = "backbone"
    backbone_tag: str = "code.model"


class TagsRegistry(StrictModel):
    """``config/tags.yaml``."""

    grouping: GroupingTags = GroupingTags()
    stage: StageTags = StageTags()
    benchmark: BenchmarkTags = BenchmarkTags()
    fingerprint: FingerprintTags = FingerprintTags()
    model: ModelTags = ModelTags()
