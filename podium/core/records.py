"""Plain, I/O-free views of the MLflow runs that selection works on, and the rules a run's tags must meet to
become one (checked once, where runs are parsed: a run that breaks them is skipped, never the whole read)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from podium.core.backend_registry import FORMATS
from podium.core.safety import HEX64, SAFE_VALUE, require_hex64, require_safe
from podium.errors import UnsafeValueError

#: Where an Optuna trial records the MLflow run to benchmark (``trial.set_user_attr``), as the hook reads it.
RUN_ID_ATTR = "mlflow_run_id"
#: Where training code puts the TorchScript model inside the refit (or trial) run.
DEFAULT_ARTIFACT_PATH = "model/model.pt"
#: Where a training script logs the model, per ``benchmarking.model_format``.
ARTIFACT_PATHS = {f.name: f.artifact_path for f in FORMATS.values()}


#: Where podium's training helpers record the whole champion, so the hook needs no MLflow look-up.
CHAMPION_ATTR = "podium.champion"


@dataclass(frozen=True)
class BenchmarkRecord:
    """One FINISHED benchmark run (or one result event): what aggregation needs of it."""

    run_id: str
    start_time: int  # milliseconds since the epoch, as MLflow stores it
    study_key_hash: str
    trial_key_hash: str
    benchmark_key: str | None  # None: a legacy run written without the tag
    config_hash: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    #: The run's ``code.benchmark.stability`` and ``code.benchmark.contended`` tags ("" when absent): why its
    #: figure may be in doubt (read by :mod:`podium.core.doubt`).
    stability: str = ""
    contended: str = ""


@dataclass(frozen=True)
class TrialRecord:
    """A trial or refit run written by training code."""

    run_id: str
    kind: Literal["trial", "refit"]
    start_time: int
    study_key_hash: str
    trial_key_hash: str
    objective: float | None
    backbone: str | None
    data_fp: str | None = None
    eval_fp: str | None = None


@dataclass(frozen=True)
class Champion:
    """The model of one trial that is to be benchmarked: the refit run if there is one, else the trial run."""

    run_id: str
    study_key_hash: str
    trial_key_hash: str
    data_fp: str
    eval_fp: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Champion:
        return cls(**{k: str(data[k]) for k in ("run_id", "study_key_hash", "trial_key_hash", "data_fp", "eval_fp")})


#: The longest fingerprint a request may carry (``BenchmarkRequest.data_fp`` / ``eval_fp``).
MAX_FINGERPRINT_CHARS = 256
#: How a tag's value must look: ``safe`` goes into filter strings and Redis keys, ``hex64`` is a SHA-256 digest,
#: ``text`` is free text a request carries (at most ``MAX_FINGERPRINT_CHARS``).
Rule = Literal["safe", "hex64", "text"]


@dataclass(frozen=True)
class RefusedRun:
    """A run read from the store whose tag breaks a rule: skipped, with one warning that names it."""

    run_id: str
    tag: str
    problem: str

    def __str__(self) -> str:
        return f"run {self.run_id}: its tag {self.tag} {self.problem}; the run is skipped"


def refused_tag(run_id: str, checks: Iterable[tuple[str, str | None, Rule]]) -> RefusedRun | None:
    """The first of ``checks`` (tag name, value or None when absent, rule) whose value breaks its rule."""
    for tag, value, rule in checks:
        if value is None:
            continue
        problem = _problem(value, rule)
        if problem is not None:
            return RefusedRun(run_id, tag, problem)
    return None


def _problem(value: str, rule: Rule) -> str | None:
    if len(value) > MAX_FINGERPRINT_CHARS:  # no rule allows it; said without quoting thousands of characters
        return f"is {len(value)} characters long (at most {MAX_FINGERPRINT_CHARS}), starting {value[:24]!r}"
    if rule == "text" or (HEX64 if rule == "hex64" else SAFE_VALUE).fullmatch(value):
        return None
    try:  # the rule's own words
        (require_hex64 if rule == "hex64" else require_safe)(value, "")
    except UnsafeValueError as exc:
        return str(exc).strip()
    return None
