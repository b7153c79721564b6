"""Fingerprints of data and eval sets: what changes the data changes the fingerprint, nothing else does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from podium.training import fingerprint


def test_a_file_a_folder_and_bytes(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"ids": [1, 2]}\n')
    first = fingerprint(data)
    assert first.startswith("sha256:") and len(first) == 7 + 64
    assert fingerprint(str(data)) == first == fingerprint(data)  # a path as str or Path
    data.write_text('{"ids": [1, 3]}\n')
    assert fingerprint(data) != first
    assert fingerprint(b"abc") == fingerprint(bytearray(b"abc")) != fingerprint(b"abd")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("x")
    folder = fingerprint(tmp_path)
    (tmp_path / "sub" / "a.txt").write_text("y")
    assert fingerprint(tmp_path) != folder
    (tmp_path / "sub" / "a.txt").write_text("x")
    assert fingerprint(tmp_path) == folder  # content, not timestamps


def test_records_in_order_and_numpy_values() -> None:
    rows = [([1, 2, 3], [0, 1, 0]), ([4, 5], [1, 1])]
    assert fingerprint(rows) == fingerprint(iter(rows)) == fingerprint(list(rows))
    assert fingerprint(rows) != fingerprint(rows[::-1])
    assert fingerprint([{"b": 1, "a": 2}]) == fingerprint([{"a": 2, "b": 1}])  # canonical keys
    assert fingerprint([np.array([1, 2])]) == fingerprint([[1, 2]])
    assert fingerprint("some text") != fingerprint(["some text"])


def test_what_cannot_be_fingerprinted_is_named(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="takes a path, bytes, text or an iterable"):
        fingerprint(42)
    with pytest.raises(TypeError, match="cannot fingerprint a record of type object"):
        fingerprint([object()])
