"""A real MLflow tracking server for tests: ``mlflow server`` of the client's version, in its own cached venv
(full ``mlflow`` adds ~700 MB and its pins may clash with podium's), on a PostgreSQL backend store started
from the Debian package into a temp dir, with ``--serve-artifacts``. Free 127.0.0.1 ports; stopped by PID."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from podium.coordination.embedded import free_port
from tests.servers import ServerProcess, cached_venv, spawn, unavailable, wait_ready

MLFLOW_VERSION = importlib.metadata.version("mlflow-skinny")
PSYCOPG2 = "psycopg2-binary==2.9.13"
VENV = Path(os.environ.get("PODIUM_MLFLOW_VENV", Path.home() / ".cache" / "podium" / f"mlflow-server-{MLFLOW_VERSION}"))
PG_BIN = Path(os.environ.get("PODIUM_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: PostgreSQL refuses to run as root: it runs as the Debian package's user.
PG_USER = "postgres"


def ensure_mlflow_server() -> Path:
    return cached_venv(VENV, [f"mlflow=={MLFLOW_VERSION}", PSYCOPG2]) / "bin" / "mlflow"


@dataclass
class Postgres:
    data: Path
    port: int

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/mlflow"

    def empty(self, database: str = "mlflow") -> None:
        """Every MLflow table emptied (the schema and its version kept): a fresh store for the next test."""
        sql = (
            "DO $$ DECLARE t text; BEGIN FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version' LOOP EXECUTE 'TRUNCATE TABLE ' || quote_ident(t) || "
            "' RESTART IDENTITY CASCADE'; END LOOP; END $$;"
        )
        done = subprocess.run(
            [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", database, "-c", sql],
            user=PG_USER,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        self._default_experiment()

    def _default_experiment(self) -> None:
        """MLflow's Default experiment made again, as MLflow makes it when it opens a store: a store without it
        is one still being created, which podium waits for instead of opening."""
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(self.uri, tempfile.gettempdir())  # its constructor creates the experiment
        store.engine.dispose()

    def stop(self) -> None:
        subprocess.run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            user=PG_USER,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.data.parent, ignore_errors=True)


def start_postgres() -> Postgres:
    if not (PG_BIN / "initdb").exists():
        unavailable(f"PostgreSQL is not installed ({PG_BIN}/initdb missing: apt-get install -y postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="podium-pg-"))  # pytest's temp dirs are root's alone (0700)
    shutil.chown(folder, PG_USER)
    data, port = folder / "data", free_port()

    def as_postgres(*cmd: str) -> None:
        done = subprocess.run(cmd, user=PG_USER, capture_output=True, text=True, timeout=120, cwd=folder)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd[:2])} failed: {done.stdout[-500:]}{done.stderr[-1500:]}")

    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8")
    as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(folder / "postgres.log"),
        "-w",
        "-t",
        "60",
        "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    server = Postgres(data, port)
    as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "mlflow")
    return server


@dataclass
class TrackingServer:
    process: ServerProcess
    postgres: Postgres
    port: int
    artifacts: Path

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.stop()

    def stop_all(self) -> None:
        self.stop()
        self.postgres.stop()


def start_tracking_server(tmp: Path, postgres: Postgres | None = None, port: int | None = None) -> TrackingServer:
    """``mlflow server`` on PostgreSQL, artifacts served (``mlflow-artifacts:``); healthy when it returns."""
    binary = ensure_mlflow_server()
    postgres = postgres or start_postgres()
    port = port or free_port()
    artifacts = tmp / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    folder = tmp / f"mlflow-server-{port}"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(binary),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        postgres.uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--workers",
        "1",
    ]
    env = {
        **os.environ,
        "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        # MLflow 3.x starts job runners (huey consumers) that poll all the time: podium uses none of their jobs
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    server = TrackingServer(spawn(cmd, folder, env=env), postgres, port, artifacts)
    wait_ready(server.process, server.healthy, "mlflow server", 180)
    return server
