"""What an MLflow store can raise, and how it is said in one line (shared by the tracker's reads and writes)."""

from __future__ import annotations

import time

from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

#: What a store can raise besides MlflowException: a locked or broken sqlite file, an unreachable server.
STORE_ERRORS = (MlflowException, SQLAlchemyError, OSError)


def why(exc: BaseException) -> str:
    """The first line of a store's error (at most 500 characters)."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0][:500]


def now_ms() -> int:
    """This machine's clock in epoch milliseconds, as MLflow stamps runs."""
    return int(time.time() * 1000)
