"""Latency-vs-throughput curves of a load benchmark (read in :mod:`podium.core.load_curves`, shared with the
selection report), and the links to runs in the MLflow UI. Pure: no I/O."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from podium.core.load_curves import MODES, load_curve, load_levels, load_of

__all__ = ["MODES", "load_curve", "load_levels", "load_of", "run_link", "web_ui"]

#: What a URL path may hold as it is (RFC 3986 pchar, ``/`` and ``%``); anything else is percent-encoded.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def web_ui(url: str | None) -> str | None:
    """The base of MLflow UI links: ``url`` when it is an http(s) address, without any user, password, query or
    fragment and with its path percent-encoded; else None (a sqlite or file store has no UI of its own)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{quote(parts.path, safe=_PATH_SAFE)}".rstrip("/")


def run_link(ui: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI at ``ui``."""
    return f"{ui}/#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(str(run_id), safe='')}"
