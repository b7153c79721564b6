"""A bench stopped by SIGTERM (``kill``, ``timeout``) exits through its ``finally`` blocks, so the servers and
workers it started are stopped, not left running (Python's default for SIGTERM ends the process at once)."""

from __future__ import annotations

import signal
import sys


def finally_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
