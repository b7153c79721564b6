"""The messages that cross a process, as pydantic models with ``schema_version``; JSON only, never pickle.

``decode`` refuses oversized or malformed payloads with one readable error (``MessageError``); the
consumer parks such payloads in the dead-letter stream.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium.core.config import BenchmarkConfig
from podium.core.identity import BenchmarkIdentity, benchmark_config_hash
from podium.core.records import DEFAULT_ARTIFACT_PATH, BenchmarkRecord, Champion
from podium.core.run_tags import identity_for
from podium.core.safety import Hex64, SafeValue, pattern_problem
from podium.errors import MessageError as MessageError  # re-exported: board/feed.py imports it from here

SCHEMA_VERSION: Final = 1
#: A message larger than this is refused (a request carries a config, a result a few dozen metrics).
MAX_MESSAGE_BYTES = 64 * 1024


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def encode(self) -> str:
        text = self.model_dump_json()
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            raise MessageError(
                f"{type(self).__name__} is {len(text.encode())} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
            )
        return text


class StoreRef(Message):
    """Which MLflow store a producer read its runs from: its URI (password hidden) and an identity that does not
    depend on how the store is reached (``created-<ms>``: the store's Default experiment's creation time), so a
    worker reaching the same server by another name still matches, and one on another store does not."""

    uri: str = Field(max_length=1000)
    id: str = Field(max_length=100)


class BenchmarkRequest(Message):
    """Producer -> worker: benchmark this champion under this config."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: SafeValue = Field(default_factory=lambda: uuid.uuid4().hex)
    champion_run_id: SafeValue
    study_key_hash: SafeValue
    trial_key_hash: SafeValue
    data_fp: str = Field(max_length=256)
    eval_fp: str = Field(max_length=256)
    artifact_path: str = Field(default=DEFAULT_ARTIFACT_PATH, max_length=512)
    config: BenchmarkConfig
    #: Fingerprint of the inputs (test data content hash or synthetic seed), fixed by the producer.
    input_fingerprint: str = Field(max_length=256)
    benchmark_key: Hex64
    #: The producer's store; a worker on another store refuses the request (None: sent by older code, unchecked).
    store: StoreRef | None = None

    @property
    def champion(self) -> Champion:
        return Champion(self.champion_run_id, self.study_key_hash, self.trial_key_hash, self.data_fp, self.eval_fp)

    @property
    def identity(self) -> BenchmarkIdentity:
        """Recomputed from the request's parts by the one key function; must equal ``benchmark_key``."""
        config_hash = benchmark_config_hash(self.config.benchmarking, self.input_fingerprint)
        return identity_for(self.champion, config_hash)

    def verified_identity(self) -> BenchmarkIdentity:
        identity = self.identity
        if identity.key != self.benchmark_key:
            raise MessageError(
                f"request {self.request_id}: benchmark_key {self.benchmark_key[:16]}… does not match its parts "
                f"(recomputed {identity.key[:16]}…); build requests with podium.producers.enqueue_benchmark"
            )
        return identity


class BenchmarkResult(Message):
    """Worker -> ``podium:benchmarks``: a FINISHED benchmark run, committed under its fence."""

    schema_version: Literal[1] = SCHEMA_VERSION
    benchmark_key: Hex64
    run_id: SafeValue
    start_time: int
    study_key_hash: SafeValue
    trial_key_hash: SafeValue
    config_hash: Hex64
    champion_run_id: SafeValue
    metrics: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]]
    device: str = Field(max_length=1000)
    worker: str = Field(max_length=256)
    fencing_token: int
    stability: str = Field(default="", max_length=1000)

    def record(self) -> BenchmarkRecord:
        return BenchmarkRecord(
            self.run_id,
            self.start_time,
            self.study_key_hash,
            self.trial_key_hash,
            self.benchmark_key,
            self.config_hash,
            dict(self.metrics),
            stability=self.stability,
        )


class ServingChoice(Message):
    """One Triton serving config (:class:`podium.core.tuning.ServingConfig`) as a message field."""

    instance_count: int = Field(ge=1, le=1024)
    max_batch_size: int = Field(ge=1, le=1_000_000)
    dynamic_batching: bool
    max_queue_delay_us: int = Field(ge=0, le=10**9)


class TuneConfigRequest(Message):
    """``podium tune --target`` -> a worker of that queue: deploy one serving config of one model on your Triton
    server, run the load levels of ``config``, unload, and answer with the outcome."""

    schema_version: Literal[1] = SCHEMA_VERSION
    search_id: SafeValue
    #: The model: an MLflow run and the artifact in it (every worker reads it from the store).
    model_run_id: SafeValue
    artifact_path: str = Field(default=DEFAULT_ARTIFACT_PATH, max_length=512)
    #: The model's name on the server (each config deploys as ``<name>-<config label>``).
    model_name: SafeValue
    config: BenchmarkConfig
    #: What the inputs are made of on the sender's host; a worker whose test data differs refuses the config.
    input_fingerprint: str = Field(max_length=256)
    serving: ServingChoice


class CandidateView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trial_key_hash: str
    benchmark_key: str
    f1_score: float
    latency_ms: float
    benchmark_runs_count: int
    benchmark_run_id: str
    trial_run_id: str
    artifact_run_id: str
    backbone: str | None = None
    composite_score: float | None = None
    #: The figure is in doubt (its runs were unstable or contended): ``doubt`` says why.
    unstable: bool = False
    doubt: str | None = None
    #: The p99 at the ranked batch size, aggregated across runs like ``latency_ms``.
    p99_ms: float | None = None
    #: What ``latency_ms`` is, e.g. ``"p50, median of 3 runs"``.
    latency_figure: str = ""
    #: ``throughput_at_sla`` policy: the ranked figure (also in ``latency_ms``) under its own name, per second.
    throughput_at_sla_per_s: float | None = None


class BestModelUpdate(Message):
    """Aggregator -> results channel: the current best of one (study, config), with why it changed."""

    schema_version: Literal[1] = SCHEMA_VERSION
    study_key_hash: str
    benchmark_config_hash: str | None
    seq: int  # per study, strictly increasing
    #: ``within_noise``: the best stays; ``challenger`` ranks first but its advantage is within the noise.
    #: ``take_over``: an aggregator started with ``--take-over`` switched the channel to its selection config.
    reason: Literal[
        "first", "new_best", "figures_changed", "within_noise", "candidates_changed", "removed", "take_over"
    ]
    best: CandidateView | None
    #: Candidates competing (ranked).
    candidates: int
    #: How many candidates' figures are in doubt (unstable or contended), competing or not.
    unstable_candidates: int = 0
    policy: str
    #: How runs are combined (``latest`` / ``median`` / ``mean`` across runs); ``statistic`` is the per-run figure.
    aggregation: str
    statistic: str = ""
    #: The top-ranked candidate while its advantage over ``best`` is within the noise; None otherwise.
    challenger: CandidateView | None = None
    #: Candidates shown but not competing (in doubt, over the latency limit).
    excluded: int = 0
    #: One line for people, e.g. ``"challenger 1a2b3c4d5e6f within noise"``.
    note: str = ""
    published_at: float
    #: The scope's readable name next to its hashes (``tagger-study · local · torchscript · batch 1``); None when
    #: not known (older aggregators).
    label: str | None = Field(default=None, max_length=500)
    #: The selection config the update was decided under (hex of its canonical JSON); None from older aggregators.
    selection_config_hash: str | None = Field(default=None, max_length=64)


M = TypeVar("M", bound=Message)


def decode(model: type[M], payload: str | bytes | dict[str, Any]) -> M:
    """Parse and validate a message; any problem is one ``MessageError`` that says what was wrong."""
    try:
        if isinstance(payload, bytes | str):
            if len(payload) > MAX_MESSAGE_BYTES:
                raise MessageError(f"{model.__name__}: {len(payload)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
            return model.model_validate_json(payload)
        if not isinstance(payload, dict):
            raise MessageError(f"{model.__name__}: expected a JSON object, got {type(payload).__name__}")
        return model.model_validate(payload)
    except ValidationError as exc:
        raise MessageError(f"{model.__name__}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    errors = exc.errors()
    for e in errors:
        if e["type"] == "json_invalid":
            return f"not JSON ({e.get('ctx', {}).get('error', e['msg'])})"
        if e["type"] == "model_type" and not e["loc"]:  # the message itself; a field's is named below
            return f"expected a JSON object, got {type(e.get('input')).__name__}"
        if e["loc"] == ("schema_version",):
            return f"schema_version {e.get('input')!r} is not supported (this podium reads {SCHEMA_VERSION})"
    return "; ".join(f"{_where(e['loc'])}: {_message(e)}" for e in errors[:5])


def _where(loc: tuple[int | str, ...]) -> str:
    """A field's path; a key that is no plain name (sent by anyone) is quoted, so the line stays one line."""
    return ".".join(p if isinstance(p, str) and p.isidentifier() else repr(p) for p in loc) or "(top)"


def _message(error: Any) -> str:
    rule = pattern_problem(error)
    if rule is not None:
        return f"{rule}, got {error.get('input')!r}"
    return str(error["msg"]).removeprefix("Value error, ")
