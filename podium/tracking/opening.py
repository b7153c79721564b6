"""Opening an MLflow store: the URI schemes podium accepts, MLflow's HTTP client held to seconds rather than
minutes, and a store that does not exist yet waited for, never created (except by ``podium demo``)."""

from __future__ import annotations

import os
from pathlib import Path

from mlflow import MlflowClient

from podium.errors import StoreNotReady, StoreUnavailable, TrackingError
from podium.settings.env import redact_url
from podium.tracking.readiness import sqlite_path, store_state
from podium.tracking.sqlite import open_sqlite
from podium.tracking.store_errors import STORE_ERRORS, why

#: MLflow's HTTP client defaults retry for minutes (an unreachable server took 266 s to fail); podium's
#: processes fail in seconds instead, and never print run links to stdout. Environment values win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
#: Store URI schemes podium can open (MLflow's own list is longer; these are the ones a team uses with it).
SCHEMES = (
    "sqlite",
    "http",
    "https",
    "postgresql",
    "postgresql+psycopg2",
    "mysql",
    "mysql+pymysql",
    "file",
    "databricks",
)


def open_client(tracking_uri: str, create: bool = False) -> MlflowClient:
    """A client of the store at ``tracking_uri``. The store must exist and be complete (``StoreNotReady``
    otherwise: wait and try again); only with ``create`` (``podium demo``, which owns its store) is a sqlite
    store created."""
    scheme = tracking_uri.split(":", 1)[0] if ":" in tracking_uri else ""
    if scheme not in SCHEMES:
        raise TrackingError(
            f"tracking URI {redact_url(tracking_uri)!r} has an unknown scheme {scheme!r}; use sqlite:///path/to/"
            "mlflow.db or http(s)://host:port (an MLflow tracking server), e.g. in PODIUM_TRACKING_URI"
        )
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if create:
        db = sqlite_path(tracking_uri)
        if db is not None and db.is_file() and db.stat().st_size == 0:
            raise TrackingError(
                f"{db} is an empty file, not an MLflow store; remove it to let podium create a store there, "
                "or point PODIUM_TRACKING_URI at the right file"
            )
    else:
        state = store_state(tracking_uri)
        if not state.ready:
            raise StoreNotReady(
                f"no MLflow store at {redact_url(tracking_uri)} yet ({state.why}); podium never creates one "
                "(your training's first MLflow call does): point --tracking-uri or PODIUM_TRACKING_URI at the "
                "store your training writes to"
            )
    if tracking_uri.startswith("sqlite:///"):
        try:
            return open_sqlite(tracking_uri, Path(tracking_uri.removeprefix("sqlite:///")))
        except STORE_ERRORS as exc:  # locked by another writer, a disk error: may pass, unlike a bad URI
            raise StoreUnavailable(f"opening the MLflow store {tracking_uri} failed: {why(exc)}") from exc
    return MlflowClient(tracking_uri=tracking_uri)
