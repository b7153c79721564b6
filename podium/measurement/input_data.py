"""Test data: a JSONL file of token id sequences, or of texts turned into token ids by a ``tokenizer.json``.

Each line is one of: a list of token ids; ``{"input_ids": [...]}``; a JSON string; ``{"text": "..."}``. Texts
need a tokenizer (the ``tokenizers`` package: ``pip install 'podium[text]'``): ``benchmarking.tokenizer``, or a
``tokenizer.json`` stored in the TorchScript archive (``_extra_files``) or next to the model file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from podium.errors import BackendError

TOKENIZER_FILE = "tokenizer.json"


def load_token_rows(path: Path, tokenizer: Path | None = None, model_file: Path | None = None) -> list[list[int]]:
    """Token id sequences from ``path``, texts tokenized (special tokens included, as a serving tokenizer
    adds them); ``tokenizer`` or the model's own tokenizer.json is read only when the file holds texts."""
    items = _read_lines(Path(path))
    texts = [i for i, (_, value) in enumerate(items) if isinstance(value, str)]
    rows: list[list[int]] = [value if isinstance(value, list) else [] for _, value in items]
    if texts:
        encode = _tokenizer(path, tokenizer, model_file)
        for i in texts:
            rows[i] = encode(items[i][1])
            if not rows[i]:
                raise BackendError(f"test_data {path}, line {items[i][0]}: the tokenizer made no tokens of this text")
    return rows


def _read_lines(path: Path) -> list[tuple[int, list[int] | str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BackendError(f"test_data {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BackendError(f"test_data {path}: not UTF-8 text; expected JSON lines") from None
    items: list[tuple[int, list[int] | str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BackendError(f"test_data {path}, line {number}: not JSON ({exc.msg})") from None
        items.append((number, _one_item(value, path, number)))
    if not items:
        raise BackendError(f"test_data {path}: no token sequences or texts in the file")
    return items


def _one_item(value: Any, path: Path, number: int) -> list[int] | str:
    if isinstance(value, dict):
        value = value.get("input_ids", value.get("text"))
    if isinstance(value, str) and value.strip():
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)
    ):
        return value
    raise BackendError(
        f"test_data {path}, line {number}: expected a non-empty list of non-negative token ids, "
        "an object with 'input_ids', or a text (a JSON string or an object with 'text')"
    )


def _tokenizer(data: Path, configured: Path | None, model_file: Path | None):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise BackendError(
            f"test_data {data} holds texts, which need the tokenizers package: pip install 'podium[text]'"
        ) from None
    try:
        if configured is not None:
            return _encoder(Tokenizer.from_str(Path(configured).read_text(encoding="utf-8")))
        raw = model_tokenizer(model_file) if model_file is not None else None
        if raw is not None:
            return _encoder(Tokenizer.from_str(raw))
    except OSError as exc:
        raise BackendError(f"benchmarking.tokenizer {configured}: cannot read: {exc.strerror}") from None
    except Exception as exc:  # tokenizers raises its own Exception subclass for a malformed file
        raise BackendError(f"not a tokenizer.json ({configured or model_file}): {str(exc)[:200]}") from None
    raise BackendError(
        f"test_data {data} holds texts but no tokenizer was found: set benchmarking.tokenizer to a "
        f"{TOKENIZER_FILE}, or store one with the model (next to it, or in its TorchScript archive)"
    )


def _encoder(tokenizer: Any):
    return lambda text: list(tokenizer.encode(text).ids)


def model_tokenizer(model_file: Path) -> str | None:
    """A tokenizer.json kept with the model: in its TorchScript archive (``extra/tokenizer.json``) or beside it."""
    beside = Path(model_file).parent / TOKENIZER_FILE
    if beside.is_file():
        return beside.read_text(encoding="utf-8")
    from podium.backends.torchscript import archive_extra

    try:
        raw = archive_extra(model_file, TOKENIZER_FILE)
    except (OSError, zipfile.BadZipFile):
        return None
    return raw.decode("utf-8") if raw is not None else None
