"""Short hashes: a unique prefix of a study (or trial) hash stands for the hash, as the tables show them."""

from __future__ import annotations

from collections.abc import Iterable

from podium.core.safety import HEX64, require_safe
from podium.errors import PrefixError

#: The shortest prefix accepted (the tables show 10-12 characters).
MIN_PREFIX = 6
#: Matches listed in an error at most.
SHOWN = 8


def resolve(prefix: str, known: Iterable[str], what: str = "study") -> str:
    """The one hash in ``known`` that starts with ``prefix``; a full 64-hex hash is taken as it is.
    Anything else is one ``PrefixError`` that says what matched (never an empty view that waits forever)."""
    if HEX64.fullmatch(prefix):
        return prefix
    require_safe(prefix, what)  # what reaches a filter string or a key pattern is checked first
    if len(prefix) < MIN_PREFIX:
        raise PrefixError(
            f"{what} {prefix!r}: give the full hash or a prefix of at least {MIN_PREFIX} of its characters"
        )
    hashes = sorted(set(known))
    matches = [h for h in hashes if h.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        listed = ", ".join(h[:12] for h in hashes[:SHOWN]) + (" …" if len(hashes) > SHOWN else "")
        raise PrefixError(f"no {what} hash starts with {prefix!r}; known: {listed or 'none'}")
    listed = ", ".join(m[:16] for m in matches[:SHOWN]) + (" …" if len(matches) > SHOWN else "")
    raise PrefixError(f"{what} {prefix!r} is ambiguous: {len(matches)} hashes start with it ({listed}); give more")
