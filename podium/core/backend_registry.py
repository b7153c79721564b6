"""Every backend and model format podium knows, each registered once, here, as pure data.

A *model format* is what a model file is (``benchmarking.model_format``): how to load it in this process, how to
read its signature for a deployment, which Triton deploys serve it. A *backend* is where the model runs
(``benchmarking.backend``): in this process, on an inference server, or nowhere (synthetic). Each names the
function in its own module under ``podium/backends/`` that builds its runtime, as ``"module:attribute"``, so
this table stays free of imports: the config checks and the config hash (the core) read it, and
:mod:`podium.backends.factory` imports only the module a run needs. No other module switches on a backend's or a
format's name (``tests/unit/test_backend_switches.py`` checks). Adding one: ``docs/adding-a-backend.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class FormatSpec:
    """A model format: the file a backend loads."""

    #: The ``benchmarking.model_format`` value.
    name: str
    #: How messages name it ("TorchScript models").
    label: str
    #: The file name ending that makes a model path this format whatever the config says; "" for none.
    suffix: str
    #: Where training code logs it inside a run, when the config names no path.
    artifact_path: str
    #: ``module:callable`` ``(model_file, device, precision, declared_inputs, threads) -> InferenceBackend``: the
    #: model run in this process.
    in_process: str
    #: ``module:callable`` ``(model_file) -> (inputs, outputs) | None``: the signature stored with the model.
    signature: str
    #: ``(module, pip extra)`` the in-process runtime needs.
    requires: tuple[str, str]
    #: ``(module, pip extra)`` reading the signature needs; None: read with the standard library.
    signature_requires: tuple[str, str] | None = None
    #: ``triton.deploy`` values that serve this format (the first is the one to suggest).
    deploys: tuple[str, ...] = ()
    #: Deploys whose config needs the outputs, learned by running the model once when it declares none.
    outputs_by_dry_run: tuple[str, ...] = ()
    #: An MLflow model of this flavor holds this format's file, measured as logged (``data`` names it).
    mlflow_flavor: str | None = None
    #: ``module:callable`` ``(module, specs, example, dest, what, shown) -> (file, note)``: a torch module (an
    #: MLflow pytorch model) saved in this format; None: podium cannot make one.
    from_torch: str | None = None
    #: The file ending of weights kept beside the model file (fetched and uploaded with it); None: none.
    weights_suffix: str | None = None


@dataclass(frozen=True)
class BackendSpec:
    """A backend: where the model runs."""

    #: The ``benchmarking.backend`` value, also in tags, hashes and ``podium bench --backend``.
    name: str
    #: ``module:callable`` ``(RuntimeRequest) -> InferenceBackend``.
    runtime: str
    #: Formats it can run (empty: any, it runs no model).
    formats: tuple[str, ...]
    #: Whether it needs the model file: ``always``; ``unless_on_server`` (not for a model already on the server,
    #: ``--model-name`` or ``triton.model_name``); ``never``.
    model_file: Literal["always", "unless_on_server", "never"]
    #: It reaches an inference server at the worker's ``PODIUM_TRITON_URL``: a worker without one refuses it,
    #: and ``protocol`` is part of the config hash.
    server: bool = False
    #: It uploads the model as ``triton.deploy`` (which must serve ``model_format``).
    deploys: bool = False
    #: The model runs in podium's process, so host contention can slow it: contended windows are discarded.
    in_process: bool = False
    #: Its own ``benchmarking`` settings, part of the config hash only when it runs (a section's
    #: ``max_batch_size: null`` is hashed as the largest batch size, as it is deployed).
    hashed_settings: tuple[str, ...] = ()
    #: Said in ``benchmark.json`` notes when it is not in-process: why host contention is only recorded.
    contention_note: str | None = None
    #: ``(module, pip extra)`` its runtime needs whatever the format; None: the format's own.
    requires: tuple[str, str] | None = None


FORMATS: Mapping[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            name="torchscript",
            label="TorchScript",
            suffix="",  # .pt, .pth, .ts, ...: a TorchScript file is any file not named by another format
            artifact_path="model/model.pt",
            in_process="podium.backends.torchscript:TorchScriptBackend",
            signature="podium.backends.torchscript:read_signature",
            requires=("torch", "torch"),
            deploys=("libtorch", "python"),
            outputs_by_dry_run=("libtorch", "python"),
            from_torch="podium.backends.torchscript:from_torch",
        ),
        FormatSpec(
            name="onnx",
            label="ONNX",
            suffix=".onnx",
            artifact_path="model/model.onnx",
            in_process="podium.backends.onnx:OnnxBackend",
            signature="podium.backends.onnx:onnx_signature",
            requires=("onnxruntime", "onnx"),
            signature_requires=("onnxruntime", "onnx"),
            deploys=("onnx",),
            mlflow_flavor="onnx",
            from_torch="podium.backends.onnx:from_torch",
            weights_suffix=".data",
        ),
    )
}

BACKENDS: Mapping[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            name="local",
            runtime="podium.backends.factory:open_in_process",
            formats=("torchscript", "onnx"),
            model_file="always",
            in_process=True,
        ),
        BackendSpec(
            name="triton",
            runtime="podium.backends.triton:open_triton",
            formats=("torchscript", "onnx"),
            model_file="unless_on_server",
            server=True,
            deploys=True,
            hashed_settings=("triton",),
            contention_note=(
                "host_contention counts the inference server's own work as others' (it runs outside podium's "
                "process): recorded, not used to discard windows"
            ),
            requires=("tritonclient", "triton"),
        ),
        BackendSpec(
            name="synthetic",
            runtime="podium.backends.synthetic:open_synthetic",
            formats=(),
            model_file="never",
            hashed_settings=("synthetic_service_ms",),
            contention_note="host_contention recorded, not used to discard windows: a synthetic request is a sleep",
        ),
    )
}

#: What ``benchmarking.triton.deploy`` says when the model is already on the server (nothing is uploaded).
NO_DEPLOY = "none"


def backend_spec(name: str) -> BackendSpec:
    """The registered backend ``name``; ``ValueError`` naming the ones there are."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend, got {name!r}; podium has {', '.join(BACKENDS)}") from None


def format_spec(name: str) -> FormatSpec:
    """The registered model format ``name``; ``ValueError`` naming the ones there are."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown model format, got {name!r}; podium has {', '.join(FORMATS)}") from None


def format_of_path(path: str | None) -> str | None:
    """The format a model path's ending says (a ``.onnx`` file is ONNX whatever the config says), else None."""
    if path is None:
        return None
    return next((f.name for f in FORMATS.values() if f.suffix and path.lower().endswith(f.suffix)), None)


def deploy_mismatch(model_format: str, deploy: str) -> str | None:
    """Why ``triton.deploy: deploy`` cannot serve a ``model_format`` model, or None when it can."""
    fmt = format_spec(model_format)
    if deploy == NO_DEPLOY or deploy in fmt.deploys:
        return None
    owner = next((f for f in FORMATS.values() if deploy in f.deploys), None)
    if owner is not None and len(fmt.deploys) > 1:
        return f"triton.deploy: {deploy} deploys {owner.label} models: set model_format: {owner.name}"
    return f"{fmt.label} models cannot be deployed as triton.deploy: {deploy}; use triton.deploy: {fmt.deploys[0]}"
