"""A store's selections, read the one way ``podium select`` and the board read them: the runs loaded with the
aggregator's clock rule, selected by the shared core, named with readable labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from podium.core.config import SelectionConfig
from podium.core.documents import selection_document
from podium.core.figure import describe
from podium.core.selection import Selection
from podium.core.state import SelectionState, select_all
from podium.core.store import RunReads, ScopeLabels
from podium.core.verification import SkewBounds
from podium.tracking.labels import label_json


@dataclass(frozen=True)
class StoreSelection:
    selections: list[Selection]
    state: SelectionState
    labels: dict[tuple[str, str | None], ScopeLabels]
    config: SelectionConfig

    def documents(self) -> list[dict[str, Any]]:
        """One JSON document per selection, labelled (``podium select --json``'s ``selections``)."""
        latency = describe(self.config.benchmark)
        out = []
        for s in self.selections:
            labels = self.labels.get((s.study_key_hash, s.benchmark_config_hash))
            out.append(label_json(selection_document(s, dict(latency)), labels))
        return out


def select_store(
    tracking: RunReads, experiments: Sequence[str] | None, config: SelectionConfig, skew: SkewBounds
) -> StoreSelection:
    """Every selection of the named experiments (all active ones when none are named)."""
    ids = tracking.experiment_ids(experiments)
    selections, state = select_all(tracking.load_benchmarks(ids, skew), tracking.load_trials(ids), config)
    return StoreSelection(selections, state, tracking.describe_selections(selections), config)
