"""Where the model to benchmark comes from: an MLflow run's artifact, a ``runs:/`` URI, or a local file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mlflow.exceptions import MlflowException

from podium.core.config import BenchmarkingSection
from podium.core.records import DEFAULT_ARTIFACT_PATH
from podium.core.safety import require_safe
from podium.errors import ModelNotFoundError
from podium.measurement.input_data import TOKENIZER_FILE
from podium.tracking.tracker import MlflowTracking


@dataclass(frozen=True)
class ModelSource:
    run_id: str | None  # the champion run, when the model comes from MLflow
    artifact_path: str | None
    local_path: Path | None  # set once downloaded, or for a plain file

    def __post_init__(self) -> None:
        if self.run_id is not None:
            require_safe(self.run_id, "run id")  # nothing unvalidated reaches MLflow


def parse_model_uri(uri: str) -> ModelSource:
    """``runs:/<run_id>/<path>``, ``file:///abs/model.pt`` or a plain path."""
    if uri.startswith("runs:/"):
        rest = uri.removeprefix("runs:/").strip("/")
        run_id, _, path = rest.partition("/")
        return ModelSource(run_id, path or DEFAULT_ARTIFACT_PATH, None)
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return ModelSource(None, None, Path(parts.path if parts.scheme else uri))
    raise ModelNotFoundError(f"--model-uri {uri!r}: use runs:/<run_id>/<path>, file:///path or a plain path")


def fetch(source: ModelSource, tracking: MlflowTracking | None, dest: Path) -> Path:
    """A local file holding the model (downloaded from the run when it comes from MLflow), with the files kept
    beside it that it needs: an ONNX model's external weights (``<name>.data``, as ``torch.onnx.export`` writes
    them) and a ``tokenizer.json`` (for test data holding texts)."""
    if source.local_path is not None:
        if not source.local_path.is_file():
            raise ModelNotFoundError(f"model file {source.local_path} does not exist")
        return source.local_path
    if tracking is None or not source.run_id or not source.artifact_path:
        raise ModelNotFoundError("no model file and no MLflow run to download it from")
    try:
        if source.artifact_path.startswith("models:/"):  # an MLflow 3 logged model of the run
            from mlflow.artifacts import download_artifacts

            folder = dest / "mlflow-model"
            model_id = source.artifact_path.removeprefix("models:/").strip("/")
            location = tracking.client.get_logged_model(model_id).artifact_location  # this store's, not a registry's
            return Path(download_artifacts(artifact_uri=location, dst_path=str(folder), tracking_uri=tracking._uri()))
        model = Path(tracking.client.download_artifacts(source.run_id, source.artifact_path, str(dest)))
        if not model.is_dir():
            _fetch_companions(tracking, source.run_id, source.artifact_path, dest)
        return model
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"cannot download artifact {source.artifact_path!r} of run {source.run_id}: {exc.message}; "
            "pass --artifact-path if the model lives elsewhere in the run"
        ) from None
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot download artifact {source.artifact_path!r} of run {source.run_id}: {exc}"
        ) from None


def _fetch_companions(tracking: MlflowTracking, run_id: str, artifact_path: str, dest: Path) -> None:
    parent = str(Path(artifact_path).parent)
    folder = "" if parent == "." else f"{parent}/"
    wanted = {f"{artifact_path}.data", f"{folder}{TOKENIZER_FILE}"}
    for info in tracking.client.list_artifacts(run_id, folder.rstrip("/") or None):
        if info.path in wanted:  # lands beside the model: dest/<path>
            tracking.client.download_artifacts(run_id, info.path, str(dest))


def fetch_model(
    source: ModelSource, tracking: MlflowTracking | None, dest: Path, cfg: BenchmarkingSection
) -> tuple[Path, str | None]:
    """:func:`fetch`, and an MLflow model (a ``models:/`` URI or a run's model folder) made into the file the
    backend loads: (the file, the note saying how it was made, None when measured as stored)."""
    model = fetch(source, tracking, dest)
    if not model.is_dir():
        return model, None
    from podium.errors import ConversionError
    from podium.measurement.mlflow_models import is_mlflow_model, materialize

    if not is_mlflow_model(model):
        raise ModelNotFoundError(
            f"artifact {source.artifact_path!r} of run {source.run_id} is a folder without an MLmodel file; "
            "set model.artifact_path (podium bench --artifact-path) to the model file inside it"
        )
    try:
        return materialize(model, cfg, dest / "converted")
    except ConversionError as exc:
        raise ModelNotFoundError(f"run {source.run_id}: {exc}") from None
