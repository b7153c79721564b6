"""The model and benchmark config of an MLflow run named on the command line (``--run-id``), shared by
``podium bench`` and ``podium tune``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from podium.core.backend_registry import format_of_path

if TYPE_CHECKING:
    from podium.core.config import BenchmarkConfig
    from podium.core.records import Champion
    from podium.measurement.artifacts import ModelSource
    from podium.tracking.tracker import MlflowTracking


def adopt_run(
    tracking: MlflowTracking,
    run_id: str,
    cfg: BenchmarkConfig,
    source: ModelSource,
    artifact_path: str | None,
    log: bool,
    model_format: str | None,
) -> tuple[Champion | None, ModelSource, BenchmarkConfig]:
    """The champion (when logging), the model and the config of ``--run-id``: a plain MLflow run's model is
    found where it is (a logged model, a .pt/.onnx artifact, ``model.artifact_path``)."""
    from podium.cli.pipeline_cmds import objective_of
    from podium.measurement.artifacts import ModelSource
    from podium.settings.env import PodiumSettings
    from podium.tracking.plain_runs import adopt

    adopted = adopt(
        tracking,
        run_id,
        objective_metric=objective_of(PodiumSettings()) if log else None,
        artifact_path=artifact_path or cfg.model.artifact_path,
        require_objective=log,
    )
    if adopted.plain and adopted.artifact_path:
        source = ModelSource(adopted.champion.run_id, adopted.artifact_path, None)
        if (named := format_of_path(adopted.artifact_path)) is not None and not model_format:
            cfg = cfg.with_overrides(model_format=named)
    return (adopted.champion if log else None), source, cfg
