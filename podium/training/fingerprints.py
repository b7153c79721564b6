"""Fingerprints of the data and evaluation sets a model was trained and judged on.

A fingerprint is part of the ``benchmark_key``: when the data changes, the key changes and the model is
benchmarked again. ``fingerprint`` takes what training code has at hand: a file or folder, bytes, text, or
an iterable of records (rows, token lists, dicts), and returns ``sha256:<hex>``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Files are read in blocks of this size (a fingerprint of a large data set never loads it whole).
BLOCK_BYTES = 1 << 20


def fingerprint(data: str | os.PathLike[str] | bytes | Iterable[Any]) -> str:
    """``sha256:<hex>`` of a file, a folder (its files' relative paths and contents), bytes, a string that is
    not a path, or the records of an iterable (each as canonical JSON, in order)."""
    digest = hashlib.sha256()
    if isinstance(data, bytes | bytearray | memoryview):
        digest.update(b"bytes:" + bytes(data))
    elif isinstance(data, os.PathLike) or (isinstance(data, str) and _is_path(data)):
        _add_path(digest, Path(data))
    elif isinstance(data, str):
        digest.update(b"text:" + data.encode("utf-8"))
    elif isinstance(data, Iterable):
        digest.update(b"records:")
        for record in data:
            digest.update(_canonical(record) + b"\n")
    else:
        raise TypeError(
            f"fingerprint() takes a path, bytes, text or an iterable of records, got a {type(data).__name__}"
        )
    return f"sha256:{digest.hexdigest()}"


def _is_path(text: str) -> bool:
    return "\n" not in text and len(text) < 4096 and Path(text).exists()


def _add_path(digest: Any, path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"fingerprint(): {path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(b"file:" + str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(BLOCK_BYTES):
                digest.update(block)


def _canonical(record: Any) -> bytes:
    if isinstance(record, bytes | bytearray):
        return b"b:" + bytes(record)
    try:
        return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_item).encode()
    except TypeError as exc:
        raise TypeError(f"fingerprint(): cannot fingerprint a record of type {type(record).__name__}: {exc}") from None


def _item(value: Any) -> Any:
    """numpy scalars and arrays, tensors: as plain lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
