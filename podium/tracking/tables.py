"""Runs read straight from an MLflow database (sqlite, PostgreSQL): the aggregator's per-batch check and the
worker's existence check (a run with the key counts only when it holds the result metrics).

``search_runs`` builds every run whole through MLflow's ORM: ~0.4-0.8 ms a run, most of what the aggregator
spends on a live event. The check needs only a run's status, start time, tags and latest metrics: three indexed
queries on MLflow's own tables (``runs``, ``tags``, ``latest_metrics``, keyed by ``run_uuid``), sent as plain
driver SQL, give the same values 10-20x cheaper. An HTTP tracking server has no tables to read: there the
tracker keeps ``search_runs``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

#: Database URI schemes whose MLflow tables are read directly.
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2")


@dataclass(frozen=True)
class StoredRun:
    """What the checks read of a run: as ``search_runs`` would report it, without building the whole run."""

    run_id: str
    status: str
    start_time: int
    lifecycle_stage: str
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    #: Its params and end time (epoch ms; None: not ended), read only where a record needs them (trial runs,
    #: a rebuild's placing in time): the look-ups by id leave them out.
    params: Mapping[str, str] = field(default_factory=dict)
    end_time: int | None = None

    @classmethod
    def of(cls, run: Any) -> StoredRun:
        """The same view of an ``mlflow.entities.Run`` (the path of a tracking server)."""
        info, data = run.info, run.data
        return cls(
            info.run_id,
            info.status,
            info.start_time or 0,
            info.lifecycle_stage,
            data.tags,
            data.metrics,
            data.params,
            info.end_time,
        )

    def only(self, tags: Sequence[str] | None, metrics: Sequence[str] | None) -> StoredRun:
        """The same run holding only the tags and metrics named (None: all of them)."""
        return replace(
            self,
            tags=self.tags if tags is None else {k: self.tags[k] for k in tags if k in self.tags},
            metrics=self.metrics if metrics is None else {k: self.metrics[k] for k in metrics if k in self.metrics},
        )


class RunTables:
    """Read-only access to the run tables of one MLflow database."""

    def __init__(self, database_uri: str):
        import sqlalchemy

        options: dict[str, Any] = {"connect_args": {"timeout": 30}} if database_uri.startswith("sqlite") else {}
        self.engine = sqlalchemy.create_engine(database_uri, **options)
        self._mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"

    @classmethod
    def for_uri(cls, tracking_uri: str) -> RunTables | None:
        """Tables for a database tracking URI; None for a tracking server (or a scheme not read directly)."""
        scheme = tracking_uri.split(":", 1)[0]
        return cls(tracking_uri) if scheme in DATABASE_SCHEMES else None

    def _marks(self, values: Sequence[Any]) -> str:
        return ", ".join([self._mark] * len(values))

    def _only(self, names: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
        """A condition on ``key`` and its parameters for the names asked for; nothing for all. ``key || ''``
        keeps the planner on the ``run_uuid`` index: a search of the (key, run_uuid) primary key for every
        pair costs sqlite 1.6x a walk of each run's few rows."""
        if names is None:
            return "", ()
        unique = tuple(dict.fromkeys(names)) or ("",)  # no name: a condition no key meets
        return f" AND key || '' IN ({self._marks(unique)})", unique

    def active_experiment_ids(self) -> list[str]:
        """Ids of every active experiment (what ``search_experiments`` lists: ~0.2 ms here, ~50 ms there)."""
        (rows,) = self._fetch([("SELECT experiment_id FROM experiments WHERE lifecycle_stage = 'active'", ())])
        return [str(row[0]) for row in sorted(rows)]

    def warm(self) -> None:
        """Open the pool's connection now, so that the first look-up does not pay for it."""
        self.engine.raw_connection().close()

    def _fetch(self, queries: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Sequence[Any]]:
        """Rows of each query in turn (one connection, the driver's cursor: plain tuples, no SQLAlchemy rows,
        which cost as much as the reading itself)."""
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            out: list[Sequence[Any]] = []
            for sql, params in queries:
                cursor.execute(sql, params)
                out.append(cursor.fetchall())
            cursor.close()
            conn.rollback()  # read only: end the transaction the driver may have begun
            return out
        finally:
            conn.close()

    def runs(
        self,
        run_ids: Sequence[str],
        experiment_ids: Sequence[str],
        tags: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
    ) -> dict[str, StoredRun]:
        """The runs with these ids in these experiments, whatever their status or lifecycle (absent if not
        found), with every tag and latest metric, or only the ``tags`` and ``metrics`` named (a podium run has
        ~20 tags and ~15 metrics; the aggregator's check reads 8 and 3)."""
        ids, experiments = tuple(run_ids), tuple(int(e) for e in experiment_ids)
        if not ids or not experiments:
            return {}
        only_tags, tag_names = self._only(tags)
        only_metrics, metric_names = self._only(metrics)
        marks = self._marks(ids)
        # the three queries on one connection, each on its run_uuid index; ids not in the experiments asked
        # for are dropped by the first, so their tags and metrics, read alike, are never used
        rows, tag_rows, metric_rows = self._fetch(
            [
                (
                    "SELECT run_uuid, status, start_time, lifecycle_stage FROM runs "
                    f"WHERE run_uuid IN ({marks}) AND experiment_id IN ({self._marks(experiments)})",
                    ids + experiments,
                ),
                (f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks}){only_tags}", ids + tag_names),
                (
                    "SELECT run_uuid, key, value, is_nan FROM latest_metrics "
                    f"WHERE run_uuid IN ({marks}){only_metrics}",
                    ids + metric_names,
                ),
            ]
        )
        by_tags: dict[str, dict[str, str]] = {row[0]: {} for row in rows}
        by_metrics: dict[str, dict[str, float]] = {row[0]: {} for row in rows}
        for run_id, key, value in tag_rows:
            if run_id in by_tags:
                by_tags[run_id][key] = value
        for run_id, key, value, is_nan in metric_rows:
            if run_id in by_metrics:
                by_metrics[run_id][key] = math.nan if is_nan else float(value)
        return {
            run_id: StoredRun(run_id, status, start_time or 0, stage, by_tags[run_id], by_metrics[run_id])
            for run_id, status, start_time, stage in rows
        }

    def finished_run_tagged(
        self, key: str, value: str, experiment_ids: Sequence[str], result_metrics: Sequence[str] = ()
    ) -> str | None:
        """The newest active FINISHED run in these experiments whose tag ``key`` is ``value`` and that holds
        every one of ``result_metrics`` (not NaN), or None."""
        return next(
            (run for run, has in self.finished_runs_tagged(key, value, experiment_ids, result_metrics) if has), None
        )

    def finished_runs_tagged(
        self,
        key: str,
        value: str,
        experiment_ids: Sequence[str],
        result_metrics: Sequence[str] = (),
        limit: int = 20,
    ) -> list[tuple[str, bool]]:
        """The newest active FINISHED runs (at most ``limit``) in these experiments whose tag ``key`` is
        ``value``, each with whether it holds every one of ``result_metrics`` (not NaN): what ``search_runs``
        with ``tags.key = 'value' and status = 'FINISHED'`` finds first, in one indexed query (the (key, value)
        index podium adds to sqlite stores makes it a look-up; each run's metrics are read by their primary
        key)."""
        experiments = [int(e) for e in experiment_ids]
        if not experiments:
            return []
        names = tuple(dict.fromkeys(result_metrics))
        held = (
            "(SELECT COUNT(*) FROM latest_metrics m WHERE m.run_uuid = r.run_uuid "
            f"AND m.key IN ({self._marks(names)}) AND NOT m.is_nan)"
            if names
            else "0"
        )
        (rows,) = self._fetch(
            [
                (
                    f"SELECT r.run_uuid, {held} FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                    f"WHERE t.key = {self._mark} AND t.value = {self._mark} AND r.status = 'FINISHED' "
                    f"AND r.lifecycle_stage = 'active' AND r.experiment_id IN ({self._marks(experiments)}) "
                    f"ORDER BY r.start_time DESC, r.run_uuid LIMIT {int(limit)}",
                    (*names, key, value, *experiments),
                )
            ]
        )
        return [(run_id, int(count) == len(names)) for run_id, count in rows]

    def any_run_without(
        self,
        tagged: Mapping[str, str],
        missing: str,
        experiment_ids: Sequence[str],
    ) -> bool:
        """Is there an active FINISHED run in these experiments with every tag of ``tagged`` and no tag
        ``missing``? What ``search_runs`` with ``tags.k = 'v' and ... and tags.missing IS NULL`` finds, in one
        indexed query (the first tag's (key, value) look-up, the others by the tags' primary key)."""
        experiments = [int(e) for e in experiment_ids]
        if not experiments or not tagged:
            return False
        (first_key, first_value), *others = tagged.items()
        also = "".join(
            f" AND EXISTS (SELECT 1 FROM tags o{i} WHERE o{i}.run_uuid = r.run_uuid AND o{i}.key = {self._mark} "
            f"AND o{i}.value = {self._mark})"
            for i in range(len(others))
        )
        (rows,) = self._fetch(
            [
                (
                    f"SELECT 1 FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                    f"WHERE t.key = {self._mark} AND t.value = {self._mark} AND r.status = 'FINISHED' "
                    f"AND r.lifecycle_stage = 'active' AND r.experiment_id IN ({self._marks(experiments)}){also} "
                    f"AND NOT EXISTS (SELECT 1 FROM tags n WHERE n.run_uuid = r.run_uuid AND n.key = {self._mark}) "
                    "LIMIT 1",
                    (first_key, first_value, *experiments, *(v for kv in others for v in kv), missing),
                )
            ]
        )
        return bool(rows)

    def close(self) -> None:
        self.engine.dispose()
