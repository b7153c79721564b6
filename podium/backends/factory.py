"""Build the configured backend."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from podium.backends.base import InferenceBackend, InputSpec
from podium.core.config import BenchmarkingSection
from podium.errors import BackendError

if TYPE_CHECKING:
    from podium.backends.triton import Deployment


def require_extra(module: str, extra: str, what: str) -> None:
    """Refuse in one line, naming the pip extra to install, when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise BackendError(f"{what} needs the {module} package, which is not installed: pip install 'podium[{extra}]'")


def make_backend(
    cfg: BenchmarkingSection,
    *,
    model_file: Path | None = None,
    url: str | None = None,
    model_name: str | None = None,
    model_version: str = "",
    deployment_name: str = "podium-model",
) -> InferenceBackend:
    """``local``: the model file in-process. ``triton``: on the server at ``url``, the model named
    ``model_name`` (or ``triton.model_name`` with ``deploy: none``), else the model file uploaded as
    ``triton.deploy`` under ``deployment_name`` (and unloaded after)."""
    if cfg.backend == "synthetic":
        from podium.backends.synthetic import SyntheticBackend

        return SyntheticBackend(cfg.synthetic_service_ms)
    if cfg.backend == "local":
        if model_file is None:
            raise BackendError("the local backend needs a model file (--run-id or --model-uri)")
        declared = [InputSpec(i.name, i.datatype, tuple(i.shape), i.vocab_size) for i in cfg.inputs or []]
        if cfg.model_format == "onnx":
            require_extra("onnxruntime", "onnx", "an ONNX model on the local backend")
            from podium.backends.onnx import OnnxBackend

            return OnnxBackend(model_file, cfg.device, cfg.precision, declared or None, cfg.threads)
        require_extra("torch", "torch", "the local backend")
        from podium.backends.local import LocalBackend

        return LocalBackend(model_file, cfg.device, cfg.precision, declared or None, cfg.threads)
    if not url:
        raise BackendError(
            "the triton backend needs the server's address: set PODIUM_TRITON_URL=HOST:PORT (or "
            "`podium worker --triton-url`), or pass `podium bench --url`"
        )
    require_extra("tritonclient", "triton", "the triton backend")
    from podium.backends.triton import TritonBackend

    name = model_name or cfg.triton.model_name
    if name is not None:  # a model already on the server
        return TritonBackend(url, name, model_version, cfg.protocol, cfg.request_timeout_s)
    if model_file is None:
        raise BackendError(f"deploying to Triton as {cfg.triton.deploy} needs the model file (--run-id or --model-uri)")
    return TritonBackend(
        url, deployment_name, "", cfg.protocol, cfg.request_timeout_s, deployment(cfg, model_file, deployment_name)
    )


def deployment(cfg: BenchmarkingSection, model_file: Path, name: str) -> Deployment:
    """What to upload for ``triton.deploy``: the config from the model's signature (an ONNX model's from its
    graph), and the files. A TorchScript model that declares no outputs (no signature, or none in it) is run once
    on CPU to learn them (:mod:`podium.backends.outputs`), and the deployment notes what was derived."""
    from podium.backends.local import read_signature
    from podium.backends.triton import Deployment
    from podium.backends.triton_deploy import model_config, model_files

    notes: tuple[str, ...] = ()
    if cfg.model_format == "onnx":
        require_extra("onnxruntime", "onnx", "deploying an ONNX model (its signature is read with onnxruntime)")
        from podium.backends.onnx import onnx_signature

        signature: tuple[list[InputSpec], list[InputSpec]] | None = onnx_signature(model_file)
    else:
        signature = read_signature(model_file)
    inputs, outputs = signature or ([], [])
    if not outputs and cfg.model_format != "onnx" and cfg.triton.deploy in ("libtorch", "python"):
        require_extra("torch", "torch", "learning the outputs of a model that declares none (a dry run)")
        from podium.backends.outputs import dry_run

        declared = [InputSpec(i.name, i.datatype, tuple(i.shape), i.vocab_size) for i in cfg.inputs or []]
        inputs, outputs, note = dry_run(
            model_file, declared or None, cfg.batch_sizes, cfg.max_length, cfg.triton.deploy, cfg.seed
        )
        notes = (note,)
    t = cfg.triton
    config = model_config(
        name, t.deploy, inputs, outputs, t.max_batch_size or max(cfg.batch_sizes), t.instance_count, t.dynamic_batching
    )
    weights = model_file.with_name(f"{model_file.name}.data")  # an ONNX model's external data, by its name
    beside = {weights.name: weights.read_bytes()} if cfg.model_format == "onnx" and weights.is_file() else None
    return Deployment(t.deploy, config, model_files(t.deploy, model_file.read_bytes(), beside=beside), notes)
