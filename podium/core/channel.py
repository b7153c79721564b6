"""One selection config per study channel, and sequence numbers that survive a Redis data loss: pure rules.

A study's channel (its latest-value keys, its live channel, its history entries) is published under one
selection config, named by :func:`selection_config_hash`. A leader whose config differs refuses to publish on
that study unless it was started with ``--take-over``; the switch is then published as an update whose reason
is ``take_over``.

A study's sequence counter lives in Redis. Every aggregator remembers the highest sequence number it knows of
each study (those it published; while it stands by, Redis's counters and the history stream's new entries). When
Redis lost a counter (FLUSHALL, a fresh replica) while MLflow still holds the study, the next leader puts it back
at what it knew (:func:`restored_counter`), so the sequence goes on instead of restarting at 1. Only when no
running aggregator knew the study does it restart at 1; subscribers then re-sync from the latest value
(:mod:`podium.coordination.subscriber`).
"""

from __future__ import annotations

from typing import Literal

from podium.core.config import SelectionConfig
from podium.core.identity import sha256_hex

Channel = Literal["publish", "take_over", "refuse"]


def selection_config_hash(config: SelectionConfig) -> str:
    """SHA-256 hex of the canonical JSON of every setting of the selection config (defaults included)."""
    return sha256_hex(config.model_dump(mode="json"))


def channel_rule(channel_hash: str | None, own_hash: str, take_over: bool) -> Channel:
    """What a leader may do on a study whose channel was last published under ``channel_hash``."""
    if channel_hash is None or channel_hash == own_hash:
        return "publish"
    return "take_over" if take_over else "refuse"


def refusal(study: str, channel_hash: str, own_hash: str) -> str:
    """The one line a refusing leader logs."""
    return (
        f"Study {study[:12]}: its channel is published under selection config {channel_hash[:12]}, this aggregator's "
        f"is {own_hash[:12]}; not publishing it (start this aggregator with --take-over to switch the channel, "
        "or give it the same best_model_selection.yaml)."
    )


def restored_counter(counter: int | None, known: int | None) -> int | None:
    """The value to put a study's sequence counter back at: what this aggregator knew, when Redis lost it."""
    return known if counter is None and known else None
