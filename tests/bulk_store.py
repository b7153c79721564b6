"""Setup data in bulk: thousands of FINISHED runs written into a sqlite MLflow store in one transaction,
through MLflow's own SQLAlchemy models (what ``create_run`` + ``log_batch`` + ``set_terminated`` would
leave, at a fraction of the cost: ~20k runs/s instead of ~50 runs/s on a busy machine)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun, SqlTag
from sqlalchemy import create_engine
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class RunRow:
    experiment_id: str
    start_time: int
    tags: Mapping[str, str]
    metrics: Mapping[str, float] = field(default_factory=dict)
    status: str = "FINISHED"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def write_runs(store_uri: str, rows: Iterable[RunRow]) -> list[str]:
    """Insert ``rows`` as runs (tags, metrics, latest metrics) in one transaction; returns their ids."""
    engine = create_engine(store_uri)
    ids = []
    try:
        with Session(engine) as session, session.begin():
            for row in rows:
                ids.append(row.run_id)
                session.add(
                    SqlRun(
                        run_uuid=row.run_id,
                        name=f"bulk-{row.run_id[:8]}",
                        experiment_id=int(row.experiment_id),
                        status=row.status,
                        start_time=row.start_time,
                        end_time=row.start_time + 1,
                        lifecycle_stage="active",
                        artifact_uri="",
                        source_type="LOCAL",
                        source_name="",
                        entry_point_name="",
                        user_id="podium-tests",
                        source_version="",
                    )
                )
                session.add_all(SqlTag(key=k, value=v, run_uuid=row.run_id) for k, v in row.tags.items())
                for k, v in row.metrics.items():
                    values = {"key": k, "value": v, "timestamp": row.start_time, "step": 0, "is_nan": False}
                    session.add(SqlMetric(run_uuid=row.run_id, **values))
                    session.add(SqlLatestMetric(run_uuid=row.run_id, **values))
    finally:
        engine.dispose()
    return ids
