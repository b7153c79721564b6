"""Build the configured backend: look it up in :mod:`podium.core.backend_registry`, import its module, call it."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from podium.backends.base import InferenceBackend, RuntimeRequest
from podium.core.backend_registry import BackendSpec, backend_spec, format_spec
from podium.core.config import BenchmarkingSection
from podium.errors import BackendError


def require_extra(module: str, extra: str, what: str) -> None:
    """Refuse in one line, naming the pip extra to install, when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise BackendError(f"{what} needs the {module} package, which is not installed: pip install 'podium[{extra}]'")


def resolve(target: str) -> Any:
    """The attribute a registry entry names as ``module:attribute``."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def needs_model_file(spec: BackendSpec, cfg: BenchmarkingSection, model_name: str | None) -> bool:
    """Whether ``spec`` needs the model file under ``cfg`` (not for a model already on the server)."""
    if spec.model_file == "unless_on_server":
        return not (model_name or cfg.triton.model_name)
    return spec.model_file == "always"


def make_backend(
    cfg: BenchmarkingSection,
    *,
    model_file: Path | None = None,
    url: str | None = None,
    model_name: str | None = None,
    model_version: str = "",
    deployment_name: str = "podium-model",
) -> InferenceBackend:
    """The runtime of ``cfg.backend``: ``local`` runs the model file in this process; ``triton`` the model on the
    server at ``url`` named ``model_name`` (or ``triton.model_name``), else the model file uploaded as
    ``triton.deploy`` under ``deployment_name`` (and unloaded after); ``synthetic`` runs nothing."""
    spec = backend_spec(cfg.backend)
    if spec.server and not url:
        raise BackendError(
            f"the {spec.name} backend needs the server's address: set PODIUM_TRITON_URL=HOST:PORT (or "
            "`podium worker --triton-url`), or pass `podium bench --url`"
        )
    if needs_model_file(spec, cfg, model_name) and model_file is None:
        raise BackendError(f"the {spec.name} backend needs a model file (--run-id or --model-uri)")
    if spec.requires is not None:
        require_extra(*spec.requires, f"the {spec.name} backend")
    request = RuntimeRequest(cfg, model_file, url, model_name, model_version, deployment_name)
    return resolve(spec.runtime)(request)


def open_in_process(request: RuntimeRequest) -> InferenceBackend:
    """The ``local`` backend: the model file in this process, run by the runtime its format registers."""
    cfg = request.cfg
    fmt = format_spec(cfg.model_format)
    require_extra(*fmt.requires, f"a {fmt.label} model on the {cfg.backend} backend")
    runtime = resolve(fmt.in_process)
    return runtime(request.model_file, cfg.device, cfg.precision, request.declared_inputs(), cfg.threads)
