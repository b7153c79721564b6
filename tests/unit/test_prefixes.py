"""Short hashes: unique, ambiguous, unknown, too short, full."""

from __future__ import annotations

import pytest

from podium.core.prefixes import resolve
from podium.errors import PrefixError, UnsafeValueError

A, B, C = "abcdef01" + "0" * 56, "abcdef02" + "0" * 56, "123456" + "f" * 58


def test_a_unique_prefix_resolves() -> None:
    assert resolve("abcdef01", [A, B, C]) == A
    assert resolve("123456", [A, B, C]) == C


def test_an_ambiguous_prefix_lists_the_matches() -> None:
    with pytest.raises(
        PrefixError, match=r"'abcdef' is ambiguous: 2 hashes start with it \(abcdef0100000000, abcdef0200000000\)"
    ):
        resolve("abcdef", [A, B, C])


def test_an_unknown_prefix_lists_what_is_known() -> None:
    with pytest.raises(PrefixError, match=r"no study hash starts with 'ffffff'; known: 123456ffffff, abcdef010000"):
        resolve("ffffff", [A, B, C])
    with pytest.raises(PrefixError, match="known: none"):
        resolve("ffffff", [])


@pytest.mark.parametrize("prefix", ["abc", "abcde"])
def test_too_short(prefix: str) -> None:
    with pytest.raises(PrefixError, match="at least 6"):
        resolve(prefix, [A, B, C])


@pytest.mark.parametrize("prefix", ["", "abc def", "a'b'cdef", "abcdef*"])
def test_unsafe_values_are_refused_before_any_look_up(prefix: str) -> None:
    with pytest.raises(UnsafeValueError, match="may only hold"):
        resolve(prefix, [A, B, C])


def test_a_full_hash_is_taken_as_it_is_even_when_not_known_yet() -> None:
    assert resolve("e" * 64, [A]) == "e" * 64
