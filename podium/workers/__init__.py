"""Celery workers. ``celery -A podium.workers worker -Q podium.cpu`` finds ``app`` here; it is built from
``PODIUM_*`` settings on first access (not at import)."""

from __future__ import annotations

from typing import Any

_app: Any = None


def __getattr__(name: str) -> Any:
    if name not in ("app", "celery"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    global _app
    if _app is None:
        from podium.settings.env import PodiumSettings
        from podium.workers.app import create_worker_app

        _app = create_worker_app(PodiumSettings())
    return _app
