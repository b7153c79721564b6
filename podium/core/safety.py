"""The id types: values that end up inside MLflow filter strings or Redis key names, checked one way.

MLflow filter strings have no escaping (``'o''brien'`` silently matches nothing), so podium never
quotes its way out of trouble: a value either matches a strict pattern or is refused before any
store sees it. Each rule exists once, as a pattern; pydantic models use the ``Annotated`` types below
(validated by pydantic's compiled pattern engine, no Python per field), plain code the ``require_*``
functions, and both say the same thing when a value is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import StringConstraints

from podium.errors import UnsafeValueError

#: A benchmark key or config hash: SHA-256 hex, lowercase.
HEX64_RULE = r"[0-9a-f]{64}"
#: Anything else that may go into a filter or a Redis key: run ids, grouping hashes, stage names.
SAFE_VALUE_RULE = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,255}"
#: A tag, metric or param name; it is written between backticks, so a backtick is never allowed.
SAFE_NAME_RULE = r"[A-Za-z0-9_][A-Za-z0-9_.\-/: ]{0,249}"

HEX64 = re.compile(HEX64_RULE)
SAFE_VALUE = re.compile(SAFE_VALUE_RULE)
SAFE_NAME = re.compile(SAFE_NAME_RULE)

_SAYS = {
    HEX64_RULE: "must be 64 lowercase hex characters (a SHA-256 digest)",
    SAFE_VALUE_RULE: "may only hold letters, digits and '_', '.', ':', '-' (1-256 characters, starting with a "
    "letter or digit)",
    SAFE_NAME_RULE: "may only hold letters, digits, spaces and '_', '.', '-', '/', ':'",
}


def _anchored(rule: str) -> str:
    return f"^(?:{rule})$"


Hex64 = Annotated[str, StringConstraints(pattern=_anchored(HEX64_RULE))]
SafeValue = Annotated[str, StringConstraints(pattern=_anchored(SAFE_VALUE_RULE))]
SafeName = Annotated[str, StringConstraints(pattern=_anchored(SAFE_NAME_RULE))]


def pattern_problem(error: Mapping[str, Any]) -> str | None:
    """The rule's own words for a pydantic ``string_pattern_mismatch`` error on one of the types above."""
    if error.get("type") != "string_pattern_mismatch":
        return None
    pattern = str(error.get("ctx", {}).get("pattern", ""))
    for rule, says in _SAYS.items():
        if pattern == _anchored(rule):
            return says
    return None


def _require(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise UnsafeValueError(f"{what} {_SAYS[pattern.pattern]}, got {value!r}")
    return value


def require_hex64(value: object, what: str) -> str:
    """Return ``value`` if it is 64 lowercase hex characters, else raise ``UnsafeValueError``."""
    return _require(HEX64, value, what)


def require_safe(value: object, what: str) -> str:
    """Return ``value`` if it may safely appear in a filter string or a Redis key, else raise."""
    return _require(SAFE_VALUE, value, what)


def require_safe_name(name: object, what: str) -> str:
    """Return a tag/metric name that can be written between backticks in a filter string."""
    return _require(SAFE_NAME, name, what)
