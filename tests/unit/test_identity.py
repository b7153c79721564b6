"""benchmark_config_hash / benchmark_key: stable, order-insensitive, sensitive to every measured setting."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podium.core.config import BenchmarkingSection, StabilitySection
from podium.core.identity import (
    BenchmarkIdentity,
    benchmark_config_hash,
    build_benchmark_key,
    canonical_json,
    study_key_hash,
    trial_key_hash,
)
from podium.errors import UnsafeValueError

HEX64 = re.compile(r"[0-9a-f]{64}")
FP = "synthetic:seed=0"
batch_lists = st.lists(st.integers(min_value=1, max_value=512), min_size=1, max_size=6)


@given(batch_lists, st.randoms())
def test_batch_size_order_and_duplicates_do_not_matter(batches: list[int], rnd) -> None:
    shuffled = list(batches)
    rnd.shuffle(shuffled)
    a = benchmark_config_hash(BenchmarkingSection(batch_sizes=batches), FP)
    b = benchmark_config_hash(BenchmarkingSection(batch_sizes=shuffled + batches[:1]), FP)
    assert a == b
    assert HEX64.fullmatch(a)


SENSITIVE = {
    "batch_sizes": [1, 8],
    "max_length": 256,
    "iterations": 7,
    "warmup_iterations": 3,
    "device": "cuda",
    "target": "gpu-h200",
    "backend": "triton",
    "precision": "fp16",
    "stability": StabilitySection(max_windows=4),
    "threads": 4,
}


@pytest.mark.parametrize("field", sorted(SENSITIVE))
def test_every_measurement_setting_changes_the_hash(field: str) -> None:
    base = BenchmarkingSection()
    changed = base.model_copy(update={field: SENSITIVE[field]})
    assert benchmark_config_hash(base, FP) != benchmark_config_hash(changed, FP)


def test_protocol_matters_for_triton_only() -> None:
    triton = BenchmarkingSection(backend="triton")
    assert benchmark_config_hash(triton, FP) != benchmark_config_hash(
        triton.model_copy(update={"protocol": "grpc"}), FP
    )
    local = BenchmarkingSection(backend="local")
    assert benchmark_config_hash(local, FP) == benchmark_config_hash(local.model_copy(update={"protocol": "grpc"}), FP)


def test_input_source_matters_and_request_timeout_does_not() -> None:
    cfg = BenchmarkingSection()
    assert benchmark_config_hash(cfg, FP) != benchmark_config_hash(cfg, "file:sha256:" + "0" * 64)
    assert benchmark_config_hash(cfg, FP) == benchmark_config_hash(cfg.model_copy(update={"request_timeout_s": 5}), FP)


run_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@given(run_ids, st.text(max_size=20), st.text(max_size=20), hexes)
def test_key_is_stable_hex_and_explainable(run_id: str, data_fp: str, eval_fp: str, config_hash: str) -> None:
    key = build_benchmark_key(run_id, data_fp, eval_fp, config_hash)
    assert HEX64.fullmatch(key)
    assert key == build_benchmark_key(run_id, data_fp, eval_fp, config_hash)
    assert key == BenchmarkIdentity(run_id, data_fp, eval_fp, config_hash).key


@given(run_ids, run_ids, hexes, hexes)
def test_key_changes_with_each_part(run_a: str, run_b: str, hash_a: str, hash_b: str) -> None:
    base = build_benchmark_key(run_a, "d", "e", hash_a)
    if run_a != run_b:
        assert base != build_benchmark_key(run_b, "d", "e", hash_a)
    if hash_a != hash_b:
        assert base != build_benchmark_key(run_a, "d", "e", hash_b)
    assert base != build_benchmark_key(run_a, "d2", "e", hash_a)
    assert base != build_benchmark_key(run_a, "d", "e2", hash_a)
    assert base != build_benchmark_key(run_a, "d", "e", hash_a, version=2)


@pytest.mark.parametrize("bad", ["abc' OR '1'='1", "a b", "", "ünï", "x" * 300])
def test_unsafe_champion_run_id_is_refused(bad: str) -> None:
    with pytest.raises(UnsafeValueError, match="champion_run_id"):
        build_benchmark_key(bad, "d", "e", "0" * 64)


def test_config_hash_must_be_hex64() -> None:
    with pytest.raises(UnsafeValueError, match="benchmark_config_hash must be 64 lowercase hex"):
        build_benchmark_key("run1", "d", "e", "ABC")


def test_canonical_json_has_sorted_keys_and_no_whitespace() -> None:
    assert canonical_json({"b": [2, 1], "a": 1}) == '{"a":1,"b":[2,1]}'


def test_study_and_trial_helpers_are_deterministic_hex() -> None:
    s = study_key_hash("ner", {"lr": [1e-5, 1e-3]})
    assert HEX64.fullmatch(s) and s == study_key_hash("ner", {"lr": [1e-5, 1e-3]})
    assert s != study_key_hash("ner", {"lr": [1e-5, 1e-2]})
    t = trial_key_hash(s, {"lr": 1e-4, "layers": 2})
    assert t == trial_key_hash(s, {"layers": 2, "lr": 1e-4})
    assert t != trial_key_hash(s, {"lr": 1e-4, "layers": 3})


def test_keys_never_change_across_versions() -> None:
    """Keys written to MLflow years ago must still match: the recipe's output for fixed parts is pinned."""
    key = build_benchmark_key("a1b2c3d4e5f6", "sha256:" + "0" * 8, "unknown", "f" * 64, 1)
    assert key == "4b4aa14fa25aed7aba24436cd162307588dc6db41dcf03596983d60047175fad"
    value = {"x": [1, 2.5, None, True], "é": "ü", "a": {"z": 1, "b": -0.0}}
    assert canonical_json(value) == '{"a":{"b":-0.0,"z":1},"x":[1,2.5,null,true],"\\u00e9":"\\u00fc"}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_canonical_json_is_json_dumps_with_the_canonical_options(value) -> None:
    import json

    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    assert canonical_json(value) == expected


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
