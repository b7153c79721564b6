"""What training code calls: tagged MLflow runs, data fingerprints, hashes, TorchScript export, the hook.

import podium.training as pt
hook = pt.BenchmarkHook.from_settings()
study_hash = pt.study_key_hash("ner-tagger", SEARCH_SPACE)
...
study.optimize(objective, n_trials=20, callbacks=[hook])
"""

from __future__ import annotations

from typing import Any

from podium.core.identity import study_key_hash, trial_key_hash
from podium.training.fingerprints import fingerprint
from podium.training.runs import refit_run, trial_run

__all__ = [
    "BenchmarkHook",
    "default_tracking_uri",
    "fingerprint",
    "refit_run",
    "save_torchscript",
    "study_key_hash",
    "trial_key_hash",
    "trial_run",
]


def __getattr__(name: str) -> Any:  # heavy parts (Celery, torch) only when used
    if name == "BenchmarkHook":
        from podium.producers.hooks import BenchmarkHook

        return BenchmarkHook
    if name == "save_torchscript":
        from podium.training.torchscript import save_torchscript

        return save_torchscript
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_tracking_uri() -> str:
    """Where podium's processes look by default (``PODIUM_TRACKING_URI``, else the embedded sqlite store):
    point MLflow there (``mlflow.set_tracking_uri``) when training has no tracking server of its own."""
    from podium.settings.env import PodiumSettings

    return PodiumSettings().tracking_uri
