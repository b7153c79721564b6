"""Runs read straight from an MLflow database (sqlite, PostgreSQL): the aggregator's per-batch check and the
worker's existence check.

``search_runs`` builds every run whole through MLflow's ORM: ~0.4-0.8 ms a run, most of what the aggregator
spends on a live event. The check needs only a run's status, start time, tags and latest metrics: three indexed
queries on MLflow's own tables (``runs``, ``tags``, ``latest_metrics``, keyed by ``run_uuid``) give the same
:class:`mlflow.entities.Run` values 10-20x cheaper. An HTTP tracking server has no tables to read: there the
tracker keeps ``search_runs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mlflow.entities import Metric, Run, RunData, RunInfo, RunTag

#: Database URI schemes whose MLflow tables can be read with SQLAlchemy.
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2")

RUNS = (
    "SELECT run_uuid, experiment_id, user_id, status, start_time, end_time, lifecycle_stage, name, artifact_uri "
    "FROM runs WHERE run_uuid IN :ids AND experiment_id IN :experiments"
)
TAGS = "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN :ids"
METRICS = "SELECT run_uuid, key, value, timestamp, step, is_nan FROM latest_metrics WHERE run_uuid IN :ids"
#: The newest active FINISHED run carrying a tag value (the (key, value) index podium adds makes it a look-up).
TAGGED = (
    "SELECT r.run_uuid FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid WHERE t.key = :key AND t.value = :value "
    "AND r.status = 'FINISHED' AND r.lifecycle_stage = 'active' AND r.experiment_id IN :experiments "
    "ORDER BY r.start_time DESC, r.run_uuid LIMIT 1"
)


class RunTables:
    """Read-only access to the run tables of one MLflow database."""

    def __init__(self, database_uri: str):
        import sqlalchemy

        self._sa = sqlalchemy
        options: dict[str, Any] = {"connect_args": {"timeout": 30}} if database_uri.startswith("sqlite") else {}
        self.engine = sqlalchemy.create_engine(database_uri, **options)
        expanding = [sqlalchemy.bindparam("ids", expanding=True)]
        self._runs = sqlalchemy.text(RUNS).bindparams(*expanding, sqlalchemy.bindparam("experiments", expanding=True))
        self._tags = sqlalchemy.text(TAGS).bindparams(*expanding)
        self._metrics = sqlalchemy.text(METRICS).bindparams(*expanding)
        self._tagged = sqlalchemy.text(TAGGED).bindparams(sqlalchemy.bindparam("experiments", expanding=True))

    @classmethod
    def for_uri(cls, tracking_uri: str) -> RunTables | None:
        """Tables for a database tracking URI; None for a tracking server (or a scheme not read directly)."""
        scheme = tracking_uri.split(":", 1)[0]
        return cls(tracking_uri) if scheme in DATABASE_SCHEMES else None

    def runs(self, run_ids: Sequence[str], experiment_ids: Sequence[str]) -> dict[str, Run]:
        """The runs with these ids in these experiments, whatever their status or lifecycle (absent if not
        found), with every tag and latest metric, as ``search_runs`` would return them."""
        if not run_ids or not experiment_ids:
            return {}
        ids = {"ids": list(run_ids)}
        with self.engine.connect() as conn:
            rows = conn.execute(self._runs, ids | {"experiments": [int(e) for e in experiment_ids]}).fetchall()
            found = {"ids": [row.run_uuid for row in rows]}
            if not found["ids"]:
                return {}
            tags = conn.execute(self._tags, found).fetchall()
            metrics = conn.execute(self._metrics, found).fetchall()
        by_run: dict[str, tuple[list[Metric], list[RunTag]]] = {row.run_uuid: ([], []) for row in rows}
        for t in tags:
            by_run[t.run_uuid][1].append(RunTag(t.key, t.value))
        for m in metrics:
            value = math.nan if m.is_nan else float(m.value)
            by_run[m.run_uuid][0].append(Metric(m.key, value, int(m.timestamp), int(m.step)))
        return {row.run_uuid: _run(row, *by_run[row.run_uuid]) for row in rows}

    def finished_run_tagged(self, key: str, value: str, experiment_ids: Sequence[str]) -> str | None:
        """The newest active FINISHED run in these experiments whose tag ``key`` is ``value``, or None: what
        ``search_runs`` with ``tags.key = 'value' and status = 'FINISHED'`` finds first, in one indexed query."""
        if not experiment_ids:
            return None
        params = {"key": key, "value": value, "experiments": [int(e) for e in experiment_ids]}
        with self.engine.connect() as conn:
            row = conn.execute(self._tagged, params).first()
        return row.run_uuid if row else None

    def close(self) -> None:
        self.engine.dispose()


def _run(row: Any, metrics: list[Metric], tags: list[RunTag]) -> Run:
    info = RunInfo(
        run_id=row.run_uuid,
        experiment_id=str(row.experiment_id),
        user_id=row.user_id,
        status=row.status,
        start_time=row.start_time,
        end_time=row.end_time,
        lifecycle_stage=row.lifecycle_stage,
        artifact_uri=row.artifact_uri,
        run_name=row.name,
    )
    return Run(info, RunData(metrics=metrics, params=[], tags=tags))
