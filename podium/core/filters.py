"""The only way podium builds MLflow filter strings: from validated names and values."""

from __future__ import annotations

from podium.core.safety import require_safe, require_safe_name


def tag_eq(tag: str, value: str) -> str:
    """``tags.`tag` = 'value'`` after validating both sides."""
    return f"tags.`{require_safe_name(tag, 'tag name')}` = '{require_safe(value, f'value of tag {tag}')}'"


def tag_is_null(tag: str) -> str:
    """``tags.`tag` IS NULL``: runs that do not carry the tag at all."""
    return f"tags.`{require_safe_name(tag, 'tag name')}` IS NULL"


def status_is(status: str) -> str:
    """``attributes.status = 'STATUS'``."""
    return f"attributes.status = '{require_safe(status, 'run status')}'"


def all_of(*clauses: str) -> str:
    """Join clauses with AND (MLflow has no OR)."""
    return " AND ".join(clauses)


def run_id_in(run_ids: list[str]) -> str:
    """``attributes.run_id IN ('a', 'b')`` after validating every id."""
    if not run_ids:
        raise ValueError("run_id_in needs at least one run id")
    return "attributes.run_id IN ({})".format(", ".join(f"'{require_safe(r, 'run id')}'" for r in run_ids))
