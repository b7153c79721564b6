"""What podium keeps in Redis and for how long: the keys of a study can be removed when the study is gone.

Per-benchmark keys (done markers, fencing counters) expire on their own (``PODIUM_DONE_TTL_DAYS``); a
study's sequence counter and latest-value keys live as long as the study is published, and are removed
with ``podium forget --study``.
"""

from __future__ import annotations

import redis

from podium.coordination import keys
from podium.core.safety import require_safe


def study_keys(client: redis.Redis, study: str) -> list[str]:
    """The sequence counter, the channel's selection config and every latest-value key of one study that exist
    now."""
    require_safe(study, "study_key_hash")
    found = [k for k in (keys.sequence(study), keys.selection_config(study)) if client.exists(k)]
    found += sorted(client.scan_iter(match=f"{keys.best_channel(study)}:*", count=1000))
    return found


def forget_study(client: redis.Redis, study: str) -> list[str]:
    """Delete a study's sequence counter and latest-value keys; returns the keys removed."""
    found = study_keys(client, study)
    if found:
        client.delete(*found)
    return found
