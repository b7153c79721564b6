"""Nothing unvalidated reaches an MLflow filter string."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podium.core.filters import all_of, status_is, tag_eq, tag_is_null
from podium.core.safety import SAFE_VALUE, require_hex64, require_safe
from podium.errors import UnsafeValueError

INJECTIONS = [
    "abc'",
    "a' OR tags.x = 'y",
    "o''brien",
    "key with space",
    "ключ",
    "k\u200bey",
    "`tick`",
    'dq"',
    "semi;colon",
    "",
    "a\nb",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_attempts_are_refused(value: str) -> None:
    with pytest.raises(UnsafeValueError):
        tag_eq("benchmark_key", value)
    with pytest.raises(UnsafeValueError):
        require_hex64(value, "benchmark_key")


@pytest.mark.parametrize("name", ["a`b", "x'y", ""])
def test_unsafe_tag_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeValueError, match="tag name"):
        tag_is_null(name)


@given(st.text(max_size=80))
def test_every_accepted_value_is_plain(value: str) -> None:
    try:
        clause = tag_eq("code.grouping.trial_key_hash", value)
    except UnsafeValueError as exc:
        assert repr(value) in str(exc)
        return
    assert SAFE_VALUE.fullmatch(value)
    assert clause.count("'") == 2


def test_clauses_compose() -> None:
    f = all_of(tag_eq("code.stage", "benchmark"), tag_is_null("benchmark_key"), status_is("FINISHED"))
    assert f == "tags.`code.stage` = 'benchmark' AND tags.`benchmark_key` IS NULL AND attributes.status = 'FINISHED'"


def test_require_safe_names_the_value() -> None:
    with pytest.raises(UnsafeValueError, match=r"study_key_hash .*got \"x'\""):
        require_safe("x'", "study_key_hash")
