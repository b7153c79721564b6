"""Configuration models for ``config/benchmark.yaml`` and ``config/best_model_selection.yaml``.

The defaults here equal the shipped YAML files (a test keeps them in step), so podium works with no
file at all. Loading a file turns any problem into one ``ConfigError`` naming the file, the key, the
bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
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

from podium.core.choices import (
    Aggregation,
    Backend,
    Deploy,
    ModelFormat,
    Padding,
    Policy,
    Precision,
    Protocol,
    RunMode,
)
from podium.core.safety import SafeName, SafeValue
from podium.core.validation import parse_model


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- benchmark.yaml


class RunSection(StrictModel):
    mode: RunMode = "reuse_if_exists"


class StabilitySection(StrictModel):
    """perf_analyzer-style stability: windows must agree before a result counts as stable."""

    #: Give up after this many measurement windows and flag the result ``unstable``.
    max_windows: PositiveInt = 10
    #: The last ``agree_windows`` windows must agree within this ratio (max/min) on p50 and throughput.
    max_ratio: float = Field(default=1.10, gt=1.0)
    agree_windows: int = Field(default=3, ge=2)
    #: A window whose coefficient of variation reaches this is noisy (pyperf flags 10 %).
    max_cv: PositiveFloat = 0.10


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
    backend: Backend = "local"
    protocol: Protocol = "http"
    #: ``synthetic`` backend only: the fixed service time of each request (pipeline smoke tests, benches).
    synthetic_service_ms: NonNegativeFloat = 0.0
    #: The worker pool that measures (one Celery queue per target, e.g. ``cpu``, ``gpu-h200``).
    target: SafeValue = "cpu"
    precision: Precision = "fp32"
    #: Seconds before a request to an inference server is abandoned.
    request_timeout_s: PositiveFloat = 30.0
    stability: StabilitySection = Field(default_factory=StabilitySection)
    triton: TritonSection = Field(default_factory=TritonSection)
    #: What the model artifact is: a TorchScript archive (``model/model.pt``) or an ONNX graph
    #: (``model/model.onnx``, ``pip install 'podium[onnx]'``); the default artifact path follows it.
    model_format: ModelFormat = "torchscript"
    #: The model's inputs, for a model podium cannot describe itself (no signature, unknown argument names);
    #: ``null``: from the model's signature or its argument names (local), or the server's metadata (triton).
    inputs: list[InputDecl] | None = None

    @model_validator(mode="after")
    def _format_fits_deploy(self) -> BenchmarkingSection:
        if self.backend != "triton" or self.triton.deploy == "none":
            return self
        if self.model_format == "onnx" and self.triton.deploy != "onnx":
            raise ValueError(
                f"an ONNX model cannot be deployed as triton.deploy: {self.triton.deploy}; use triton.deploy: onnx"
            )
        if self.model_format == "torchscript" and self.triton.deploy == "onnx":
            raise ValueError("triton.deploy: onnx deploys ONNX models: set model_format: onnx")
        return self

    @field_validator("batch_sizes")
    @classmethod
    def _positive_unique_sorted(cls, value: list[int]) -> list[int]:
        if not value or any(isinstance(b, bool) or b < 1 for b in value):
            raise ValueError(f"must be a non-empty list of positive integers, got {value}")
        return sorted(set(value))


class OutputSection(StrictModel):
    filename: str = "benchmark.json"


class BenchmarkConfig(StrictModel):
    """``config/benchmark.yaml``."""

    run: RunSection = Field(default_factory=RunSection)
    benchmarking: BenchmarkingSection = Field(default_factory=BenchmarkingSection)
    output: OutputSection = Field(default_factory=OutputSection)

    def with_overrides(self, **benchmarking: Any) -> BenchmarkConfig:
        """A copy with some ``benchmarking`` keys replaced (validated like the file)."""
        merged = self.benchmarking.model_dump() | {k: v for k, v in benchmarking.items() if v is not None}
        section = parse_model(BenchmarkingSection, merged, "command-line option benchmarking")
        return self.model_copy(update={"benchmarking": section})


# ---------------------------------------------------------------- best_model_selection.yaml


class ObjectiveSection(StrictModel):
    metric: str = "macro-f1"
    direction: Literal["maximize", "minimize"] = "maximize"


class ScoringSection(StrictModel):
    f1_weight: NonNegativeFloat = 0.7
    latency_weight: NonNegativeFloat = 0.3
    normalize_weights: bool = True

    @model_validator(mode="after")
    def _some_weight(self) -> ScoringSection:
        if self.f1_weight + self.latency_weight == 0:
            raise ValueError("f1_weight and latency_weight cannot both be 0")
        return self


class BenchmarkSelectionSection(StrictModel):
    required_metrics: list[str] = Field(default_factory=lambda: ["latency_batch_1_ms"])
    latency_metric: str = "latency_batch_1_ms"
    #: How several benchmark runs of one ``benchmark_key`` make one latency (never the best one).
    latency_aggregation: Aggregation = "median"
    #: Rolling window: the newest ``window`` runs of a group are aggregated.
    window: PositiveInt = 10
    #: Leave out candidates whose representative run is ``unstable`` (its windows never agreed); by default
    #: they compete and are marked.
    exclude_unstable: bool = False


class SelectionSection(StrictModel):
    policy: Policy = "weighted"
    #: ``tolerance`` policy: candidates within this absolute distance of the top objective compete on latency.
    accuracy_tolerance: NonNegativeFloat = 0.01
    #: Candidates whose aggregated latency exceeds this are out (``null``: no limit).
    max_latency_ms: PositiveFloat | None = None


class SelectionConfig(StrictModel):
    """``config/best_model_selection.yaml``."""

    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    benchmark: BenchmarkSelectionSection = Field(default_factory=BenchmarkSelectionSection)
    selection: SelectionSection = Field(default_factory=SelectionSection)

    def with_aggregation(self, aggregation: Aggregation | None) -> SelectionConfig:
        if aggregation is None:
            return self
        bench = self.benchmark.model_copy(update={"latency_aggregation": aggregation})
        return self.model_copy(update={"benchmark": bench})
