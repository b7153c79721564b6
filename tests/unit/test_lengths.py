"""Requests planned from test data (fixed order, padding) and latency by length: pure functions, exhaustively."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from podium.backends.inputs import PlannedBatch, plan_batches
from podium.errors import BackendError
from podium.measurement.input_data import load_token_rows
from podium.measurement.lengths import latency_by_quartile, length_profile

ROWS = [[1] * n for n in (3, 9, 5, 12, 7)]


def test_without_test_data_one_synthetic_batch_of_max_length() -> None:
    assert plan_batches(None, 4, 64, "longest") == [PlannedBatch(None, 64)]
    assert PlannedBatch(None, 64).longest == 64


def test_max_length_pads_every_batch_to_it_and_longest_to_its_own_longest() -> None:
    full = plan_batches(ROWS, 2, 10, "max_length", seed=1)
    longest = plan_batches(ROWS, 2, 10, "longest", seed=1)
    assert [b.rows for b in full] == [b.rows for b in longest]  # the same requests, padded differently
    assert {b.width for b in full} == {10}
    assert [b.width for b in longest] == [max(map(len, b.rows)) for b in longest]
    assert all(len(r) <= 10 for b in longest for r in b.rows)  # truncated to max_length
    assert len(full) == 3 and all(len(b.rows) == 2 for b in full)  # 5 rows in batches of 2: the last one wraps


@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=50),
    batch=st.integers(1, 9),
    seed=st.integers(0, 2**31),
    limit=st.integers(1, 8),
)
def test_plans_are_fixed_by_seed_cover_rows_and_respect_the_limit(lengths, batch, seed, limit) -> None:
    rows = [[i + 1] * n for i, n in enumerate(lengths)]
    plan = plan_batches(rows, batch, 32, "longest", seed, limit)
    assert plan == plan_batches(rows, batch, 32, "longest", seed, limit)
    assert len(plan) == min(limit, -(-len(rows) // batch))
    picked = [r[0] for b in plan for r in b.rows]
    if len(plan) * batch <= len(rows):
        assert len(set(picked)) == len(picked)  # no row twice before all were used
    else:
        assert set(picked) == {r[0] for r in rows}  # every row used
    assert all(b.width == b.longest <= 32 for b in plan)


def test_the_seed_changes_the_order() -> None:
    rows = [[i + 1] for i in range(40)]
    first = [b.rows for b in plan_batches(rows, 1, 8, seed=0)]
    assert first != [b.rows for b in plan_batches(rows, 1, 8, seed=1)]


def test_latency_by_quartile_groups_by_length() -> None:
    lengths = np.array([8] * 4 + [16] * 4 + [32] * 4 + [64] * 4)
    latencies = np.array([1.0] * 4 + [2.0] * 4 + [4.0] * 4 + [8.0] * 4)
    groups = latency_by_quartile(lengths, latencies)
    assert [(g["tokens"], g["requests"], g["p50_ms"]) for g in groups] == [
        ([8, 8], 4, 1.0),
        ([16, 16], 4, 2.0),
        ([32, 32], 4, 4.0),
        ([64, 64], 4, 8.0),
    ]
    same = latency_by_quartile(np.array([5] * 6), np.arange(6.0))
    assert same == [
        {"quartile": 1, "tokens": [5, 5], "requests": 6, "p50_ms": 2.5, "cv": pytest.approx(0.6831, abs=1e-4)}
    ]  # one length: one group


def test_length_profile_follows_requests_in_their_order() -> None:
    plan = [PlannedBatch([[1] * 4], 4), PlannedBatch([[1] * 40], 40)]
    # calls 0.. alternate the two batches; the timed ones start at call 3 (batch 1: 40 tokens)
    profile = length_profile(plan, [9_000_000, 1_000_000, 9_000_000, 1_000_000], 3, "longest")
    assert profile["p50_tokens"] == 22 and profile["max_tokens"] == 40 and profile["sequences"] == 2
    assert profile["padded_to"] == {"min": 4, "max": 40, "distinct_batches": 2}
    assert [(g["tokens"], g["p50_ms"]) for g in profile["by_length_quartile"]] == [([4, 4], 1.0), ([40, 40], 9.0)]


def test_token_rows_and_texts_mix(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    data = tmp_path / "mixed.jsonl"
    data.write_text('[5, 6]\n"a b a"\n{"text": "b zzz"}\n{"input_ids": [7]}\n')
    assert load_token_rows(data, tmp_path / "tokenizer.json") == [[5, 6], [1, 2, 1], [2, 0], [7]]
    ids_only = tmp_path / "ids.jsonl"
    ids_only.write_text("[1, 2]\n")
    assert load_token_rows(ids_only) == [[1, 2]]  # no tokenizer needed, none looked for


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"   "\n', "line 1: expected a non-empty list"),
        ("[true]\n", "line 1: expected a non-empty list"),
        ('{"text": 3}\n', "line 1: expected"),
        ('"words"\n', "holds texts but no tokenizer was found"),
    ],
)
def test_bad_text_data(tmp_path: Path, text: str, message: str) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(text)
    with pytest.raises(BackendError, match=message):
        load_token_rows(data)


def test_a_bad_tokenizer_file_is_named(tmp_path: Path) -> None:
    data = tmp_path / "texts.jsonl"
    data.write_text(json.dumps("some words") + "\n")
    (tmp_path / "tokenizer.json").write_text("not json")
    with pytest.raises(BackendError, match=r"not a tokenizer\.json"):
        load_token_rows(data, tmp_path / "tokenizer.json")
    with pytest.raises(BackendError, match=r"benchmarking\.tokenizer .* cannot read"):
        load_token_rows(data, tmp_path / "missing.json")
