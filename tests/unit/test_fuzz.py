"""Property-based fuzzing: every invalid input is one clear error (or a dead letter), never a crash."""

from __future__ import annotations

import json

import fakeredis
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podium.aggregator.service import Aggregator
from podium.coordination import keys
from podium.core.config import BenchmarkConfig, SelectionConfig
from podium.core.messages import MAX_MESSAGE_BYTES, BenchmarkRequest, BenchmarkResult, decode
from podium.core.records import Champion
from podium.errors import ConfigError, MessageError
from podium.producers.enqueue import build_request
from podium.settings.files import load_yaml as load_model
from podium.testing import Unfenced

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
REQUEST_KEYS = list(BenchmarkRequest.model_fields)
GOOD = json.loads(build_request(Champion("r" * 32, "s" * 64, "t" * 64, "d", "e"), BenchmarkConfig()).encode())


REQUIRED = {k for k, f in BenchmarkRequest.model_fields.items() if f.is_required()}
field_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


def named_fields(error: str) -> set[str]:
    """The top-level fields a refusal names (``BenchmarkRequest: a: ...; b.c: ...``)."""
    body = error.removeprefix("BenchmarkRequest: ")
    if body.startswith("schema_version "):
        return {"schema_version"}
    return {problem.split(":", 1)[0].split(".", 1)[0] for problem in body.split("; ")}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sets(st.sampled_from(REQUEST_KEYS)),
    st.dictionaries(st.sampled_from(REQUEST_KEYS), json_values, max_size=4),
    st.dictionaries(field_names, json_values, max_size=2),
)
def test_random_requests_are_refused_naming_what_is_wrong(dropped: set, replaced: dict, extra: dict) -> None:
    """A good request with fields dropped, replaced by random values and added: accepted only when the key still
    matches what it was made from; refused with one line that names only fields the test touched, and every
    required field it dropped."""
    payload = {k: v for k, v in GOOD.items() if k not in dropped} | replaced | extra
    touched = dropped | set(replaced) | set(extra)  # an added name can be a real field's: it replaces that field
    restored = set(replaced) | set(extra)
    try:
        request = decode(BenchmarkRequest, payload)
    except MessageError as exc:
        message = str(exc)
        assert message.startswith("BenchmarkRequest: ") and "\n" not in message
        named = named_fields(message)
        assert named and named <= touched, (message, touched)
        missing = (dropped - restored) & REQUIRED
        if message.count("; ") < 4 and not message.startswith("BenchmarkRequest: schema_version"):
            assert missing <= named, (message, missing)  # all named (at most five problems are listed)
        return
    assert not ((dropped - restored) & REQUIRED)  # a request missing a required field is never accepted
    try:
        assert request.verified_identity().key == GOOD["benchmark_key"]
    except MessageError as exc:
        assert "does not match its parts" in str(exc)


@settings(max_examples=200)
@given(st.sampled_from(REQUEST_KEYS), json_values)
def test_one_field_corrupted(key: str, value) -> None:
    payload = dict(GOOD, **{key: value})
    try:
        request = decode(BenchmarkRequest, payload)
    except MessageError as exc:
        assert str(exc).startswith("BenchmarkRequest: ")
        return
    try:  # it parsed: then its key either still matches its parts, or the mismatch is named
        identity = request.verified_identity()
    except MessageError as exc:
        assert "does not match its parts" in str(exc)
        return
    # accepted: the corrupted field does not feed the key (or held an equivalent value), so it is the same key
    assert identity.key == GOOD["benchmark_key"], (key, value)


@settings(max_examples=200)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_raw_bytes(raw) -> None:
    with pytest.raises(MessageError):
        decode(BenchmarkResult, raw)


def test_oversized_payloads_are_refused_both_ways() -> None:
    huge = "x" * (MAX_MESSAGE_BYTES + 1)
    with pytest.raises(MessageError, match="over the 65536-byte limit"):
        decode(BenchmarkRequest, huge)
    cfg = BenchmarkConfig().with_overrides(test_data="/" + "a" * MAX_MESSAGE_BYTES)
    request = BenchmarkRequest.model_construct(**{**GOOD, "config": cfg})
    with pytest.raises(MessageError, match="over the 65536-byte limit"):
        request.encode()


@settings(
    max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None
)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=60), max_size=3))
def test_random_stream_entries_become_dead_letters(tracking, fields: dict) -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    agg = Aggregator(r, tracking, SelectionConfig(), "fuzz", leadership=Unfenced(r))
    before = r.xlen(keys.DEAD_LETTERS_STREAM)
    agg.apply_batch([("1-0", fields)])
    assert agg.state.scopes() == []
    assert r.xlen(keys.DEAD_LETTERS_STREAM) == before + 1


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(json_values, st.sampled_from([BenchmarkConfig, SelectionConfig]))
def test_random_yaml_configs(tmp_path_factory, value, model) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(value))
    try:
        loaded = load_model(model, path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
        return
    assert loaded == model.model_validate(value or {})  # accepted only what validates as it stands


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.text(max_size=200))
def test_random_yaml_text(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text)
    try:
        loaded = load_model(SelectionConfig, path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))
        return
    assert loaded == SelectionConfig.model_validate(yaml.safe_load(text) or {})
