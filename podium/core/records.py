"""Plain, I/O-free views of the MLflow runs that selection works on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: Where an Optuna trial records the MLflow run to benchmark (``trial.set_user_attr``), as the hook reads it.
RUN_ID_ATTR = "mlflow_run_id"
#: Where training code puts the TorchScript model inside the refit (or trial) run.
DEFAULT_ARTIFACT_PATH = "model/model.pt"
#: Where a training script logs the model, per ``benchmarking.model_format``.
ARTIFACT_PATHS = {"torchscript": DEFAULT_ARTIFACT_PATH, "onnx": "model/model.onnx"}


def format_of_path(path: str | None) -> str | None:
    """``onnx`` for a model path ending in .onnx (whatever the config says, such a file is ONNX), else None."""
    return "onnx" if path is not None and path.lower().endswith(".onnx") else None


#: Where podium's training helpers record the whole champion, so the hook needs no MLflow look-up.
CHAMPION_ATTR = "podium.champion"


@dataclass(frozen=True)
class BenchmarkRecord:
    """One FINISHED benchmark run (or one result event): what aggregation needs of it."""

    run_id: str
    start_time: int  # milliseconds since the epoch, as MLflow stores it
    study_key_hash: str
    trial_key_hash: str
    benchmark_key: str | None  # None: a legacy run written without the tag
    config_hash: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialRecord:
    """A trial or refit run written by training code."""

    run_id: str
    kind: Literal["trial", "refit"]
    start_time: int
    study_key_hash: str
    trial_key_hash: str
    objective: float | None
    backbone: str | None
    data_fp: str | None = None
    eval_fp: str | None = None


@dataclass(frozen=True)
class Champion:
    """The model of one trial that is to be benchmarked: the refit run if there is one, else the trial run."""

    run_id: str
    study_key_hash: str
    trial_key_hash: str
    data_fp: str
    eval_fp: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Champion:
        return cls(**{k: str(data[k]) for k in ("run_id", "study_key_hash", "trial_key_hash", "data_fp", "eval_fp")})
