"""Configuration models for ``config/benchmark.yaml`` and ``config/best_model_selection.yaml``.

The defaults here equal the shipped YAML files (a test keeps them in step), so podium works with no
file at all. Loading a file turns any problem into one ``ConfigError`` naming the file, the key, the
bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from podium.core.backend_registry import backend_spec, deploy_mismatch, format_spec
from podium.core.choices import (
    Aggregation,
    Deploy,
    Padding,
    Policy,
    Precision,
    Protocol,
    RunMode,
    Statistic,
)
from podium.core.safety import SafeName, SafeValue
from podium.core.tuning import SearchSpace
from podium.core.validation import parse_model
from podium.errors import TuningError


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- benchmark.yaml


class RunSection(StrictModel):
    mode: RunMode = "reuse_if_exists"


class StabilitySection(StrictModel):
    """perf_analyzer-style stability: windows (each the same requests in the same order) must agree before a
    result counts as stable, and windows in which other processes took the CPU do not count."""

    #: Give up after this many measurement windows (discarded ones included) and flag the result ``unstable``.
    max_windows: PositiveInt = 10
    #: The last ``agree_windows`` windows must agree within this ratio (max/min) on p50, p99 and throughput.
    max_ratio: float = Field(default=1.10, gt=1.0)
    agree_windows: int = Field(default=3, ge=2)
    #: Flag ``high_cv`` when repeats of the same request vary this much (pyperf: 10 %); a report, never a gate:
    #: the spread of a mix of input lengths is the workload, not noise.
    max_cv: PositiveFloat = 0.10
    #: A window in which other processes used more than this share of the usable cores' capacity is discarded
    #: and measured again (within ``max_windows``); a result with no quiet windows is flagged ``contended``.
    #: 0.10: a runtime using every core is slowed by up to 1 / (1 - share), so at most ~11 %.
    max_contention: float = Field(default=0.10, gt=0.0, le=1.0)


class TritonSection(StrictModel):
    """How a ``triton`` benchmark reaches its model on the worker's server (``PODIUM_TRITON_URL``)."""

    #: ``libtorch``: upload the TorchScript as ``platform: pytorch_libtorch``; ``python``: upload it with a
    #: generated Python-backend model.py; ``none``: the model is already in the server's repository.
    deploy: Deploy = "libtorch"
    #: ``deploy: none`` only: the model's name in the server's repository.
    model_name: SafeValue | None = None
    #: Written into the uploaded config; ``null``: the largest benchmarked batch size.
    max_batch_size: PositiveInt | None = None
    instance_count: PositiveInt = 1
    dynamic_batching: bool = False

    @model_validator(mode="after")
    def _name_for_none(self) -> TritonSection:
        if self.deploy == "none" and self.model_name is None:
            raise ValueError("deploy: none benchmarks a model already on the server: set triton.model_name")
        return self


class LoadSection(StrictModel):
    """Load levels measured after the serial batches (perf_analyzer's ``--concurrency-range`` and
    ``--request-rate-range``): ``null`` lists measure none. Part of the config hash only when a level is set."""

    #: Closed loop: this many requests in flight, each slot sending its next request when its last one returns.
    concurrency: list[int] | None = None
    #: Open loop: Poisson arrivals at this many requests per second (seeded by ``benchmarking.seed``).
    request_rate: list[float] | None = None
    #: The batch size of every load request.
    batch_size: PositiveInt = 1
    #: Open loop: at most this many requests in flight (threads); arrivals beyond it are sent late.
    max_in_flight: PositiveInt = 64
    #: The p99 budget (ms) of the headline figure: the highest throughput whose p99 meets it, interpolated
    #: between levels (``throughput_at_sla_per_s``). In the config hash when set: a reused run's figure must be
    #: for the same budget.
    sla_p99_ms: PositiveFloat | None = None

    @field_validator("concurrency")
    @classmethod
    def _positive_ints(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value or any(isinstance(c, bool) or c < 1 for c in value):
            raise ValueError(f"must be a non-empty list of positive integers, got {value}")
        return sorted(set(value))

    @field_validator("request_rate")
    @classmethod
    def _positive_rates(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if not value or any(isinstance(r, bool) or not r > 0 for r in value):
            raise ValueError(f"must be a non-empty list of positive requests per second, got {value}")
        return sorted(set(float(r) for r in value))

    @property
    def any(self) -> bool:
        """Whether any load level is set."""
        return bool(self.concurrency or self.request_rate)


class TuneSection(StrictModel):
    """A serving-config search the worker runs after the benchmark, on its own Triton server (as ``podium tune
    --url``): each combination deployed under a name of its own, measured at the load levels, unloaded; the
    winner is the highest throughput at ``load.sla_p99_ms``. Needs ``backend: triton`` deploying the model and
    load levels with a budget. Part of the config hash when set."""

    instance_count: list[int] = Field(default_factory=lambda: [1, 2])
    max_batch_size: list[int] = Field(default_factory=lambda: [8])
    #: ``quick`` starts from the first value of each option: list the one to start from first.
    dynamic_batching: list[bool] = Field(default_factory=lambda: [True, False])
    max_queue_delay_us: list[int] = Field(default_factory=lambda: [0])
    #: ``quick``: coordinate descent (Model Analyzer's quick search); ``exhaustive``: every config of the grid.
    mode: Literal["quick", "exhaustive"] = "quick"

    def space(self) -> SearchSpace:
        """The grid (duplicates dropped; each value checked: TuningError)."""
        return SearchSpace(
            tuple(self.instance_count),
            tuple(self.max_batch_size),
            tuple(self.dynamic_batching),
            tuple(self.max_queue_delay_us),
        )


class InputDecl(StrictModel):
    """One model input podium cannot infer: its name, datatype and shape (-1: the batch, then max_length)."""

    name: SafeName
    datatype: Literal["INT64", "INT32", "INT16", "INT8", "UINT8", "FP32", "FP16", "FP64", "BOOL"]
    shape: list[int] = Field(min_length=1)
    #: Token ids are drawn below this (integer inputs only).
    vocab_size: PositiveInt | None = None

    @field_validator("shape")
    @classmethod
    def _dims(cls, value: list[int]) -> list[int]:
        if any(isinstance(d, bool) or (d != -1 and d < 1) for d in value):
            raise ValueError(f"dimensions are -1 (dynamic) or positive, got {value}")
        return value


class BenchmarkingSection(StrictModel):
    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    iterations: PositiveInt = 100
    warmup_iterations: NonNegativeInt = 10
    max_length: PositiveInt = 512
    #: ``null`` picks CUDA when the worker has it, else CPU.
    device: Literal["cpu", "cuda"] | None = None
    #: JSONL file of token id sequences or texts; ``null`` means deterministic synthetic inputs from ``seed``.
    test_data: Path | None = None
    #: A ``tokenizer.json`` for test data holding texts; ``null``: the one stored with the model.
    tokenizer: Path | None = None
    #: ``max_length``: every batch padded to ``max_length`` (the worst case); ``longest``: each batch padded to its
    #: longest sequence, as a serving tokenizer pads (needs ``test_data`` to vary).
    padding: Padding = "max_length"
    seed: int = 0
    #: Where the model runs, a backend of :mod:`podium.core.backend_registry`: ``local``, ``triton``, ``synthetic``.
    backend: str = "local"
    protocol: Protocol = "http"
    #: ``synthetic`` backend only: the fixed service time of each request (pipeline smoke tests, benches).
    synthetic_service_ms: NonNegativeFloat = 0.0
    #: The worker pool that measures (one Celery queue per target, e.g. ``cpu``, ``gpu-h200``).
    target: SafeValue = "cpu"
    #: The runtime's threads (torch intra-op and inter-op, OMP/MKL, ONNX Runtime intra-op), set before each
    #: measurement; a worker claims this many cores of its host for it. Part of the config hash.
    threads: PositiveInt = 1
    #: When the cores a measurement needs are claimed by other workers of the host: ``wait`` (retry later, like
    #: a busy lock) or ``contended`` (measure now on cores shared with the others, the run flagged
    #: ``contended``). Not part of the config hash; a contended run says so.
    busy_cores: Literal["wait", "contended"] = "wait"
    precision: Precision = "fp32"
    #: Seconds before a request to an inference server is abandoned.
    request_timeout_s: PositiveFloat = 30.0
    stability: StabilitySection = Field(default_factory=StabilitySection)
    triton: TritonSection = Field(default_factory=TritonSection)
    #: Load levels (closed and open loop) after the serial batches; none by default.
    load: LoadSection = Field(default_factory=LoadSection)
    #: A serving-config search after the benchmark (``triton`` backend, deploying the model); none by default.
    tune: TuneSection | None = None
    #: What the model artifact is: a TorchScript archive (``model/model.pt``) or an ONNX graph
    #: (``model/model.onnx``, ``pip install 'podium[onnx]'``); the default artifact path follows it.
    model_format: str = "torchscript"
    #: The model's inputs, for a model podium cannot describe itself (no signature, unknown argument names);
    #: ``null``: from the model's signature or its argument names (local), or the server's metadata (triton).
    inputs: list[InputDecl] | None = None

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, value: str) -> str:
        return backend_spec(value).name  # ValueError naming the registered ones

    @field_validator("model_format")
    @classmethod
    def _registered_format(cls, value: str) -> str:
        return format_spec(value).name

    @model_validator(mode="after")
    def _format_fits_backend(self) -> BenchmarkingSection:
        backend = backend_spec(self.backend)
        if backend.formats and self.model_format not in backend.formats:
            runs = " or ".join(backend.formats)
            raise ValueError(f"backend: {self.backend} runs {runs} models, not model_format: {self.model_format}")
        if backend.deploys and (why := deploy_mismatch(self.model_format, self.triton.deploy)):
            raise ValueError(why)
        if self.tune is not None:
            self._check_tune(self.tune)
        return self

    def _check_tune(self, tune: TuneSection) -> None:
        if not backend_spec(self.backend).deploys or self.triton.deploy == "none":
            raise ValueError(
                "tune deploys each serving config of the model itself: it needs backend: triton with triton.deploy "
                f"libtorch, python or onnx (got backend: {self.backend}, triton.deploy: {self.triton.deploy})"
            )
        if not self.load.any or self.load.sla_p99_ms is None:
            raise ValueError(
                "tune ranks serving configs by throughput at a p99 budget: set load.concurrency (e.g. [1, 4]) "
                "and load.sla_p99_ms"
            )
        try:
            tune.space().check_batch(self.load.batch_size)
        except TuningError as exc:
            raise ValueError(f"tune: {exc}") from None

    @field_validator("batch_sizes")
    @classmethod
    def _positive_unique_sorted(cls, value: list[int]) -> list[int]:
        if not value or any(isinstance(b, bool) or b < 1 for b in value):
            raise ValueError(f"must be a non-empty list of positive integers, got {value}")
        return sorted(set(value))


class OutputSection(StrictModel):
    #: The summary's artifact name on the benchmark run (a plain file name: it arrives in requests too).
    filename: str = Field(default="benchmark.json", min_length=1, max_length=200)

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
            raise ValueError("must be a plain file name such as benchmark.json, without folders")
        return value


class ModelSection(StrictModel):
    """Where the model of a run is, when podium should not look for it (a plain MLflow run)."""

    #: An artifact path inside the run (e.g. ``checkpoints/model.onnx``); ``null``: the run's logged model,
    #: else a .pt/.onnx file artifact, found by podium.
    artifact_path: str | None = Field(default=None, max_length=512)


class BenchmarkConfig(StrictModel):
    """``config/benchmark.yaml``."""

    run: RunSection = Field(default_factory=RunSection)
    benchmarking: BenchmarkingSection = Field(default_factory=BenchmarkingSection)
    output: OutputSection = Field(default_factory=OutputSection)
    model: ModelSection = Field(default_factory=ModelSection)

    def with_overrides(self, **benchmarking: Any) -> BenchmarkConfig:
        """A copy with some ``benchmarking`` keys replaced (validated like the file)."""
        merged = self.benchmarking.model_dump() | {k: v for k, v in benchmarking.items() if v is not None}
        section = parse_model(BenchmarkingSection, merged, "command-line option benchmarking")
        return self.model_copy(update={"benchmarking": section})


# ---------------------------------------------------------------- best_model_selection.yaml


class ObjectiveSection(StrictModel):
    metric: str = "macro-f1"
    direction: Literal["maximize", "minimize"] = "maximize"
    #: ``constraint`` and ``tolerance`` policies: objective values this close count as a tie, broken by latency
    #: (``constraint``: the objective is read in steps of this size, so a tie never depends on who else competes).
    tolerance: NonNegativeFloat = 0.01


class ScoringSection(StrictModel):
    """``weighted`` policy: score = f1_weight x objective / objective_scale - latency_weight x latency /
    latency_scale_ms. Fixed scales, so a candidate's score never depends on who else competes."""

    f1_weight: NonNegativeFloat = 0.7
    latency_weight: NonNegativeFloat = 0.3
    normalize_weights: bool = True
    #: One unit of the objective, in metric points (0.01: one point of F1 on a 0-1 scale).
    objective_scale: PositiveFloat = 0.01
    #: One unit of latency, in milliseconds.
    latency_scale_ms: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _some_weight(self) -> ScoringSection:
        if self.f1_weight + self.latency_weight == 0:
            raise ValueError("f1_weight and latency_weight cannot both be 0")
        return self


class BenchmarkSelectionSection(StrictModel):
    #: A benchmark run lacking any of these (or the ranking figure's metric) is left out, with a warning.
    required_metrics: list[str] = Field(default_factory=list)
    #: The per-run figure: a percentile of the run's timed requests (nearest rank) or their mean.
    statistic: Statistic = "p50"
    #: The batch size whose figures are ranked (it must be among the benchmarked ``batch_sizes``).
    batch_size: PositiveInt = 1
    #: An explicit per-run metric instead of ``statistic`` at ``batch_size`` (files written before those keys).
    latency_metric: str | None = None
    #: How the newest ``window`` runs of one ``benchmark_key`` make one figure: ``latest``, ``median`` or
    #: ``mean`` across runs (never the best run).
    across_runs: Aggregation = Field(
        default="median", validation_alias=AliasChoices("across_runs", "latency_aggregation")
    )
    #: Rolling window: the newest ``window`` runs of a group are aggregated.
    window: PositiveInt = 10

    @model_validator(mode="after")
    def _one_way_to_name_the_figure(self) -> BenchmarkSelectionSection:
        from podium.core.metric_names import THROUGHPUT_AT_SLA

        named = {"statistic", "batch_size"} & self.model_fields_set
        if self.latency_metric == THROUGHPUT_AT_SLA:  # no batch size of its own: the serial one is still read
            named.discard("batch_size")
        if self.latency_metric is not None and named:
            raise ValueError(
                f"set either latency_metric ({self.latency_metric}) or {' and '.join(sorted(named))}, not both"
            )
        return self

    @property
    def latency_aggregation(self) -> Aggregation:
        """The across-runs aggregation under its older name."""
        return self.across_runs


class SelectionSection(StrictModel):
    #: ``constraint``: the best objective whose p99 meets ``max_latency_ms``, ties broken by latency;
    #: ``tolerance``: the fastest within ``objective.tolerance`` of the top objective; ``weighted``: fixed-scale
    #: score (``scoring``); ``throughput_at_sla``: as ``constraint``, ties broken by the load benchmark's
    #: ``throughput_at_sla_per_s``, highest first (candidates without one are shown, not competing).
    policy: Policy = "constraint"
    #: ``constraint``: candidates whose p99 at the ranked batch size exceeds this are out; other policies: whose
    #: ranked figure exceeds it (``null``: no limit).
    max_latency_ms: PositiveFloat | None = None
    #: Let unstable or contended results compete (they are always shown, with their reason).
    include_unstable: bool = False
    #: A challenger replaces the published best only when, at this confidence, it is faster by at least
    #: ``min_improvement`` (a one-sided t bound over both candidates' runs), or wins on the objective.
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    min_improvement: float = Field(default=0.03, ge=0.0, lt=1.0)


class SelectionConfig(StrictModel):
    """``config/best_model_selection.yaml``."""

    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    benchmark: BenchmarkSelectionSection = Field(default_factory=BenchmarkSelectionSection)
    selection: SelectionSection = Field(default_factory=SelectionSection)

    @model_validator(mode="before")
    @classmethod
    def _older_keys(cls, data: Any) -> Any:
        """Files written before issue 27 keep working: ``benchmark.exclude_unstable: X`` is
        ``selection.include_unstable: not X``; ``selection.accuracy_tolerance`` is ``objective.tolerance``."""
        if not isinstance(data, dict):
            return data
        data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
        bench, sel = data.get("benchmark"), data.get("selection")
        if isinstance(bench, dict) and isinstance(bench.get("exclude_unstable"), bool):
            value = bench.pop("exclude_unstable")
            if sel is None:
                sel = data["selection"] = {}
            if isinstance(sel, dict):
                sel.setdefault("include_unstable", not value)
        if isinstance(sel, dict) and "accuracy_tolerance" in sel:
            value = sel.pop("accuracy_tolerance")
            objective = data.get("objective")
            if objective is None:
                objective = data["objective"] = {}
            if isinstance(objective, dict):
                if "tolerance" in objective and objective["tolerance"] != value:
                    raise ValueError(
                        "selection.accuracy_tolerance is now objective.tolerance; the file sets both, differently"
                    )
                objective["tolerance"] = value
        return data

    @model_validator(mode="before")
    @classmethod
    def _throughput_figure(cls, data: Any) -> Any:
        """``selection.policy: throughput_at_sla`` ranks by ``throughput_at_sla_per_s``; naming that metric as
        ``benchmark.latency_metric`` (with no policy set) means that policy. A throughput is better higher, so no
        other policy may rank by it."""
        from podium.core.metric_names import THROUGHPUT_AT_SLA  # it imports this module's stats, which import us

        if not isinstance(data, dict):
            return data
        bench, sel = (
            v.model_dump(exclude_unset=True) if isinstance(v, BaseModel) else dict(v) if isinstance(v, dict) else v
            for v in (data.get("benchmark") or {}, data.get("selection") or {})
        )
        if not isinstance(bench, dict) or not isinstance(sel, dict):
            return data
        named, policy = bench.get("latency_metric"), sel.get("policy")
        if named == THROUGHPUT_AT_SLA and policy is None:
            policy = sel["policy"] = "throughput_at_sla"
        if named == THROUGHPUT_AT_SLA and policy != "throughput_at_sla":
            raise ValueError(
                f"benchmark.latency_metric {THROUGHPUT_AT_SLA} is better higher: set selection.policy: "
                f"throughput_at_sla (got {policy})"
            )
        if policy != "throughput_at_sla":
            return data
        if named not in (None, THROUGHPUT_AT_SLA):
            raise ValueError(
                f"selection.policy throughput_at_sla ranks by {THROUGHPUT_AT_SLA}: drop benchmark.latency_metric "
                f"({named}) or set it to {THROUGHPUT_AT_SLA}"
            )
        bench["latency_metric"] = THROUGHPUT_AT_SLA
        # the ranked batch size (held to max_latency_ms, read for doubt) may still be named beside it
        return {**data, "benchmark": bench, "selection": sel}

    def with_aggregation(self, aggregation: Aggregation | None) -> SelectionConfig:
        if aggregation is None:
            return self
        bench = self.benchmark.model_copy(update={"across_runs": aggregation})
        return self.model_copy(update={"benchmark": bench})

    def with_include_unstable(self, include: bool | None) -> SelectionConfig:
        if include is None:
            return self
        return self.model_copy(update={"selection": self.selection.model_copy(update={"include_unstable": include})})
