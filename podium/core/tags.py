"""The tags registry: every MLflow tag name and stage value podium reads or writes, in one place.

Defaults follow DESIGN.md. A store written by older code (``code.study_key_hash``, stages ``hpo`` /
``hpo_refit``) is read by changing ``config/tags.yaml``, never the code.
"""

from __future__ import annotations

from podium.core.config import StrictModel
from podium.core.safety import SafeName, SafeValue


class GroupingTags(StrictModel):
    study_key_hash: SafeName = "code.grouping.study_key_hash"
    trial_key_hash: SafeName = "code.grouping.trial_key_hash"


class StageTags(StrictModel):
    key: SafeName = "code.stage"
    hpo_trial: SafeValue = "hpo_trial"
    refit: SafeValue = "refit"
    benchmark: SafeValue = "benchmark"
    selection: SafeValue = "selection"


class BenchmarkTags(StrictModel):
    key: SafeName = "benchmark_key"
    config_hash: SafeName = "code.benchmark.config_hash"
    champion_run_id: SafeName = "code.benchmark.champion_run_id"
    data_fp: SafeName = "code.benchmark.data_fp"
    eval_fp: SafeName = "code.benchmark.eval_fp"
    key_version: SafeName = "code.benchmark.key_version"
    backend: SafeName = "code.benchmark.backend"
    device: SafeName = "code.benchmark.device"
    target: SafeName = "code.benchmark.target"
    worker: SafeName = "code.benchmark.worker"
    fencing_token: SafeName = "code.benchmark.fencing_token"
    stability: SafeName = "code.benchmark.stability"
    #: ``1`` / ``true``: other processes took the host while the run measured (its figure is in doubt).
    contended: SafeName = "code.benchmark.contended"
    #: ``torchscript`` or ``onnx``: what the measured artifact was.
    model_format: SafeName = "code.benchmark.model_format"
    error: SafeName = "code.benchmark.error"


class FingerprintTags(StrictModel):
    """Tags of a champion run that say what data and evaluation produced it."""

    data: SafeName = "code.fingerprint.data"
    eval: SafeName = "code.fingerprint.eval"


class ModelTags(StrictModel):
    backbone_param: SafeName = "backbone"
    backbone_tag: SafeName = "code.model"


class TagsRegistry(StrictModel):
    """``config/tags.yaml``."""

    grouping: GroupingTags = GroupingTags()
    stage: StageTags = StageTags()
    benchmark: BenchmarkTags = BenchmarkTags()
    fingerprint: FingerprintTags = FingerprintTags()
    model: ModelTags = ModelTags()
