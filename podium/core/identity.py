"""Benchmark identity: ``benchmark_config_hash`` and ``benchmark_key``, computed by one function each.

Both are SHA-256 hex digests of canonical JSON (sorted keys, no whitespace). The key is computed once
from a request and that same value is used for the existence check, the lock, the done marker and the
tag written, so the check can always match what was written.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from podium.core.backend_registry import backend_spec
from podium.core.config import BenchmarkingSection
from podium.core.safety import require_hex64, require_safe

#: Bump when the key's recipe changes; old keys then stop matching (on purpose).
KEY_VERSION = 1
#: The model format whose configs leave ``model_format`` out of the hash (it was the only one at first).
DEFAULT_FORMAT = "torchscript"
#: Fingerprint used when the training side did not record one.
UNKNOWN_FINGERPRINT = "unknown"


#: One encoder for every call (``json.dumps`` with these options builds a new one each time: half its cost).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII: the same value always gives the same bytes."""
    return _CANONICAL.encode(value)


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("ascii")).hexdigest()


def measurement_settings(cfg: BenchmarkingSection, input_fingerprint: str) -> dict[str, Any]:
    """Every setting that can change a measured number. Cosmetic ones (output file name) are left out. What a
    backend adds (its protocol, its own settings) its registry entry says."""
    backend = backend_spec(cfg.backend)
    settings = {
        "batch_sizes": sorted(set(cfg.batch_sizes)),
        "max_length": cfg.max_length,
        "iterations": cfg.iterations,
        "warmup_iterations": cfg.warmup_iterations,
        "device": cfg.device or "auto",
        "target": cfg.target,
        "backend": cfg.backend,
        "protocol": cfg.protocol if backend.server else None,
        "precision": cfg.precision,
        "input": input_fingerprint,
        "stability": cfg.stability.model_dump(),
        # always (not only when off the default): runs measured before threads were set used every core
        "threads": cfg.threads,
    }
    if cfg.model_format != DEFAULT_FORMAT:  # only when not the default, so existing hashes never change
        settings["model_format"] = cfg.model_format
    if cfg.padding != "max_length":  # only when not the default, so existing hashes never change
        settings["padding"] = cfg.padding
    if cfg.inputs:  # only when declared, so the hashes of configs without them never change
        settings["inputs"] = [i.model_dump() for i in cfg.inputs]
    if cfg.load.any:  # only when a level is set, so the hashes of serial-only configs never change
        settings["load"] = cfg.load.model_dump()
    if cfg.tune is not None:  # only when asked for, so the hashes of configs without a search never change
        settings["tune"] = cfg.tune.model_dump()
    for name in backend.hashed_settings:  # where a server is (the worker's URL) is not part of it; what it runs is
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            value = value.model_dump()
            if "max_batch_size" in value:  # null: the largest batch size, as deployed; both spellings hash alike
                value["max_batch_size"] = value["max_batch_size"] or max(cfg.batch_sizes)
        settings[name] = value
    return settings


def benchmark_config_hash(cfg: BenchmarkingSection, input_fingerprint: str) -> str:
    """SHA-256 hex of the canonical JSON of :func:`measurement_settings`."""
    return sha256_hex(measurement_settings(cfg, input_fingerprint))


def synthetic_input_fingerprint(seed: int) -> str:
    return f"synthetic:seed={seed}"


#: The same parts give the same key: the aggregator checks every event's key against its run's parts, and a group's
#: repeated runs share them (a hit costs a tenth of the hash).
@functools.lru_cache(maxsize=4096, typed=True)  # typed: version 1 and 1.0 hash to different JSON
def build_benchmark_key(
    champion_run_id: str,
    data_fingerprint: str,
    eval_fingerprint: str,
    benchmark_config_hash: str,
    version: int = KEY_VERSION,
) -> str:
    """The one function that makes a ``benchmark_key``."""
    require_safe(champion_run_id, "champion_run_id")
    require_hex64(benchmark_config_hash, "benchmark_config_hash")
    return sha256_hex(
        {
            "champion_run_id": champion_run_id,
            "data_fingerprint": data_fingerprint,
            "eval_fingerprint": eval_fingerprint,
            "benchmark_config_hash": benchmark_config_hash,
            "version": version,
        }
    )


@dataclass(frozen=True)
class BenchmarkIdentity:
    """The parts of a benchmark key, kept together so that a key can always be explained."""

    champion_run_id: str
    data_fp: str
    eval_fp: str
    config_hash: str
    version: int = KEY_VERSION

    @cached_property
    def key(self) -> str:
        return build_benchmark_key(self.champion_run_id, self.data_fp, self.eval_fp, self.config_hash, self.version)


def study_key_hash(study_name: str, search_space: Mapping[str, Any] | None = None) -> str:
    """A study's grouping hash from its name and search space (for training code that has none)."""
    return sha256_hex({"study": study_name, "search_space": dict(search_space or {})})


def trial_key_hash(study_hash: str, params: Mapping[str, Any]) -> str:
    """A trial's grouping hash from its study hash and its hyper-parameters."""
    return sha256_hex({"study_key_hash": study_hash, "params": dict(params)})
