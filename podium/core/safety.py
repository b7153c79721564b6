"""Validation of values that end up inside MLflow filter strings or Redis key names.

MLflow filter strings have no escaping (``'o''brien'`` silently matches nothing), so podium never
quotes its way out of trouble: a value either matches a strict pattern or is refused before any
store sees it.
"""

from __future__ import annotations

import re

from podium.errors import UnsafeValueError

#: A benchmark key or config hash: SHA-256 hex, lowercase.
HEX64 = re.compile(r"[0-9a-f]{64}")
#: Anything else that may go into a filter or a Redis key: run ids, grouping hashes, stage names.
SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,255}")
#: A tag, metric or param name; it is written between backticks, so a backtick is never allowed.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/: ]{0,249}")


def require_hex64(value: object, what: str) -> str:
    """Return ``value`` if it is 64 lowercase hex characters, else raise ``UnsafeValueError``."""
    if not isinstance(value, str) or not HEX64.fullmatch(value):
        raise UnsafeValueError(f"{what} must be 64 lowercase hex characters (a SHA-256 digest), got {value!r}")
    return value


def require_safe(value: object, what: str) -> str:
    """Return ``value`` if it may safely appear in a filter string or a Redis key, else raise."""
    if not isinstance(value, str) or not SAFE_VALUE.fullmatch(value):
        raise UnsafeValueError(
            f"{what} may only hold letters, digits and '_', '.', ':', '-' (1-256 characters, "
            f"starting with a letter or digit), got {value!r}"
        )
    return value


def require_safe_name(name: object, what: str) -> str:
    """Return a tag/metric name that can be written between backticks in a filter string."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise UnsafeValueError(
            f"{what} may only hold letters, digits, spaces and '_', '.', '-', '/', ':', got {name!r}"
        )
    return name
