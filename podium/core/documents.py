"""Selections as JSON documents: what ``podium select --json`` prints and the board serves (one shape, one
writer)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from podium.core.selection import WIRE_NAMES, Candidate, Selection


def candidate_document(c: Candidate) -> dict[str, Any]:
    """A candidate, without the optional fields it does not have."""
    data = {WIRE_NAMES.get(k, k): v for k, v in asdict(c).items()}
    for optional in ("composite_score", "excluded"):
        if data[optional] is None:
            del data[optional]
    return data


def selection_document(s: Selection, latency: dict[str, Any] | None = None) -> dict[str, Any]:
    """A selection (before its readable labels); ``latency`` names the ranked figure."""
    return {
        "study_key_hash": s.study_key_hash,
        "benchmark_config_hash": s.benchmark_config_hash,
        "latency": latency or {},
        "best": candidate_document(s.best),
        "challenger": candidate_document(s.challenger) if s.challenger is not None else None,
        "note": s.note,
        "candidates": [candidate_document(c) for c in s.candidates],
        "excluded": [candidate_document(c) for c in s.excluded],
    }
