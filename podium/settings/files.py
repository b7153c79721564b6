"""Find and load podium's three config files: an explicit path, else ``settings.config_dir``, else defaults."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel

from podium.core.config import BenchmarkConfig, BenchmarkingSection, SelectionConfig
from podium.core.identity import benchmark_config_hash, synthetic_input_fingerprint
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.errors import ConfigError

log = logging.getLogger(__name__)

BENCHMARK_FILE = "benchmark.yaml"
SELECTION_FILE = "best_model_selection.yaml"
TAGS_FILE = "tags.yaml"

M = TypeVar("M", bound=BaseModel)


def load_yaml(model: type[M], path: Path | str) -> M:
    """Read ``path`` as YAML and validate it as ``model``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; pass an existing file or omit it to use defaults") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_model(model, data, str(path))


def _load(model: type[M], explicit: Path | str | None, config_dir: Path, name: str) -> M:
    if explicit is not None:
        return load_yaml(model, explicit)
    candidate = Path(config_dir) / name
    if candidate.is_file():
        return load_yaml(model, candidate)
    log.debug("No %s found; using built-in defaults.", candidate)
    return model()


def load_benchmark_config(path: Path | str | None = None, config_dir: Path = Path("config")) -> BenchmarkConfig:
    return _load(BenchmarkConfig, path, config_dir, BENCHMARK_FILE)


def load_selection_config(path: Path | str | None = None, config_dir: Path = Path("config")) -> SelectionConfig:
    return _load(SelectionConfig, path, config_dir, SELECTION_FILE)


def load_tags(path: Path | str | None = None, config_dir: Path = Path("config")) -> TagsRegistry:
    return _load(TagsRegistry, path, config_dir, TAGS_FILE)


def input_fingerprint(cfg: BenchmarkingSection) -> str:
    """What the inputs are made of: the test data file's content hash (and the tokenizer's, when one is set),
    or the synthetic seed."""
    if cfg.test_data is None:
        return synthetic_input_fingerprint(cfg.seed)
    digest = _file_digest(cfg.test_data, "test_data", "a JSONL file of token id sequences or texts")
    if cfg.tokenizer is None:
        return f"file:sha256:{digest}"
    return f"file:sha256:{digest}+tokenizer:sha256:{_file_digest(cfg.tokenizer, 'tokenizer', 'a tokenizer.json')}"


def _file_digest(path: Path, field: str, what: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(
            f"benchmarking.{field}: cannot read {path}: {exc.strerror}; point it at {what} or set it to null"
        ) from None


def config_hash_of(cfg: BenchmarkConfig) -> str:
    """``benchmark_config_hash`` of a loaded config, reading the test data file if it names one."""
    return benchmark_config_hash(cfg.benchmarking, input_fingerprint(cfg.benchmarking))
