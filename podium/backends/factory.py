"""Build the configured backend."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from podium.backends.base import BackendError, InferenceBackend
from podium.core.config import BenchmarkingSection


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
    deploy: bool = False,
) -> InferenceBackend:
    """``local``: the model file in-process. ``triton``: ``model_name`` on the server at ``url``; with
    ``deploy`` the model file is uploaded through the model-control API first (and unloaded after)."""
    if cfg.backend == "synthetic":
        from podium.backends.synthetic import SyntheticBackend

        return SyntheticBackend(cfg.synthetic_service_ms)
    if cfg.backend == "local":
        if model_file is None:
            raise BackendError("the local backend needs a model file (--run-id or --model-uri)")
        require_extra("torch", "torch", "the local backend")
        from podium.backends.local import LocalBackend

        return LocalBackend(model_file, cfg.device, cfg.precision)
    if not url:
        raise BackendError("the triton backend needs the server's --url (e.g. 127.0.0.1:8000 for HTTP)")
    if not model_name:
        raise BackendError("the triton backend needs a model name (--model-name, or a run to deploy)")
    require_extra("tritonclient", "triton", "the triton backend")
    from podium.backends.local import read_signature
    from podium.backends.triton import TritonBackend

    return TritonBackend(
        url,
        model_name,
        model_version,
        cfg.protocol,
        cfg.request_timeout_s,
        deploy_file=model_file if deploy else None,
        deploy_signature=read_signature(model_file) if deploy and model_file else None,
        max_batch_size=max(cfg.batch_sizes),
    )
