"""The closed sets of values a config key or a command option may take (plain ``Literal`` types, importable
without pydantic, so the command line can offer them without loading the models)."""

from __future__ import annotations

from typing import Literal

RunMode = Literal["reuse_if_exists", "force_new"]
Aggregation = Literal["latest", "median", "mean"]
#: ``throughput_at_sla`` ranks by a load benchmark's throughput at its p99 budget, highest first.
Policy = Literal["constraint", "tolerance", "weighted", "throughput_at_sla"]
#: The per-run latency figure selection ranks by (one number per benchmark run, before aggregation across runs).
Statistic = Literal["p50", "p90", "p99", "mean"]
Protocol = Literal["http", "grpc"]
Precision = Literal["fp32", "fp16", "bf16"]
Deploy = Literal["libtorch", "python", "onnx", "none"]
Padding = Literal["max_length", "longest"]
