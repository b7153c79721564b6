"""Validate parsed data as a pydantic model, turning every failure into one readable ConfigError (no I/O)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from podium.core.safety import pattern_problem
from podium.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` (already parsed) as ``model``; ``source`` names where it came from."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(model, exc, source)) from None


def format_validation_error(model: type[BaseModel], exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(model, err["loc"][:-1])) or "none"
            lines.append(f"{source}: {loc}: unknown key; allowed keys here: {allowed}")
            continue
        msg = pattern_problem(err) or err["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {loc}: {msg}, got {err.get('input')!r}")
    return "\n".join(lines)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []
