"""README's Recipes run as written, in bash, with only their ports and folders changed: each block brings up its
server (it waits for it to be healthy itself), then podium does one real thing against it. Every process a block
starts is stopped by its PID (its process group; PostgreSQL, which detaches, by its postmaster's)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import REPO
from tests.servers import unavailable, wait_until
from tests.token_models import BertStyleTagger, traced
from tests.tracking_server import MLFLOW_VERSION, PG_BIN, PG_USER, PSYCOPG2, ensure_mlflow_server
from tests.triton import PYTRITON_VERSION, WHEEL, ensure_tritonserver

MLFLOW_RECIPE = "### An MLflow tracking server on PostgreSQL"
TRITON_RECIPE = "### Triton on a CPU, from the `nvidia-pytriton` wheel"
ADOPT_RECIPE = "### Adopt an existing study"
#: The user's shell with podium's venv activated: its bin/ first on PATH.
VENV_BIN = Path(sys.executable).parent


def bash_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    return re.search(r"```bash\n(.*?)```", text[text.index(heading) :], re.S).group(1)


def substituted(block: str, replacements: dict[str, str]) -> str:
    """``block`` with each key (a port as a whole number, or a path) replaced; each must be there."""
    for old, new in replacements.items():
        pattern = rf"\b{old}\b" if old.isdigit() else re.escape(old)
        assert re.search(pattern, block), f"the recipe no longer has {old!r}: update this test"
        block = re.sub(pattern, lambda _, new=new: new, block)
    return block


def free_ports(n: int) -> list[int]:
    from podium.coordination.embedded import free_port

    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def stop_group(pgid: int) -> None:
    """SIGTERM every process of the block's process group (the servers it left running in the background), then
    SIGKILL what is still there after a grace period."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if wait_until(lambda: not group_alive(pgid), grace, 0.1):
            return


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_block(script: str, cwd: Path, env: dict[str, str], timeout: float) -> tuple[subprocess.Popen, str]:
    """Run ``script`` with ``bash -e -o pipefail`` in a session of its own (the caller stops its group); returns
    the finished process and its output."""
    out = cwd / "recipe.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    with contextlib.suppress(subprocess.TimeoutExpired):  # then its return code is None: the caller fails
        proc.wait(timeout=timeout)
    return proc, out.read_text(errors="replace")


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else f"({path.name} missing)"


def test_the_recipes_install_what_the_tests_use() -> None:
    """The README's pins are the ones the test servers are built from (their caches are what the recipes reuse)."""
    mlflow, triton = bash_block(MLFLOW_RECIPE), bash_block(TRITON_RECIPE)
    assert f'"mlflow=={MLFLOW_VERSION}"' in mlflow and f'"{PSYCOPG2}"' in mlflow
    assert f" {WHEEL}" in triton and f"pytriton-{PYTRITON_VERSION}}}" in triton


def sudo_path(tmp: Path) -> str:
    """A ``PATH`` prefix where ``sudo -u USER CMD`` works: the system's sudo, else (as root) ``runuser``."""
    if shutil.which("sudo"):
        return ""
    if os.geteuid() != 0:
        unavailable("the recipe runs `sudo -u postgres`: install sudo or run the tests as root")
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "sudo").write_text(
        '#!/bin/sh\nif [ "$1" = -u ]; then user=$2; shift 2; exec runuser -u "$user" -- "$@"; fi\nexec "$@"\n'
    )
    (shim / "sudo").chmod(0o755)
    return f"{shim}{os.pathsep}"


@pytest.mark.server
@pytest.mark.install
def test_the_postgres_tracking_server_recipe(tmp_path: Path) -> None:
    if not (PG_BIN / "initdb").exists():
        unavailable(f"PostgreSQL is not installed ({PG_BIN}/initdb missing: apt-get install -y postgresql)")
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        unavailable("the postgres user is missing: apt-get install -y postgresql")
    venv = ensure_mlflow_server().parent.parent  # the tests' cached venv: the recipe skips its install
    # pytest's temp dirs are root's alone (0700): the cluster lives where the postgres user may write
    folder = Path(tempfile.mkdtemp(prefix="podium-recipe-pg-"))
    shutil.chown(folder, PG_USER)
    data, artifacts = folder / "data", tmp_path / "artifacts"
    mlflow_port, pg_port = free_ports(2)
    script = substituted(
        bash_block(MLFLOW_RECIPE),
        {
            "5000": str(mlflow_port),
            "5433": str(pg_port),
            "/var/lib/postgresql/podium-mlflow": str(data),
            "$HOME/mlflow-artifacts": str(artifacts),
        },
    )
    # then what a user does next in that shell: podium, pointed at the server by the exported variable
    script += 'echo "recipe left PODIUM_TRACKING_URI=$PODIUM_TRACKING_URI"\n'
    env = {
        **os.environ,
        "PATH": f"{sudo_path(tmp_path)}{os.environ.get('PATH', '')}",
        "MLFLOW_VENV": str(venv),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # MLflow 3's idle job runners: as tests/tracking_server.py
    }
    env.pop("PGPASSWORD", None)
    proc = None
    try:
        proc, output = run_block(script, tmp_path, env, timeout=300)
        assert proc.returncode == 0, f"{output}\n--- mlflow-server.log:\n{tail(tmp_path / 'mlflow-server.log')}"
        uri = re.search(r"recipe left PODIUM_TRACKING_URI=(\S+)", output).group(1)
        assert uri == f"http://127.0.0.1:{mlflow_port}", f"the recipe points podium at {uri}, not at its server"

        # a training run as plain MLflow code writes it, its model uploaded through the server
        model = traced(BertStyleTagger(vocab=1000), tmp_path / "model" / "model.pt")
        client = MlflowClient(uri)
        run = client.create_run(client.create_experiment("recipe"))
        client.log_metric(run.info.run_id, "macro-f1", 0.8)
        client.log_artifact(run.info.run_id, str(model), "model")
        client.set_terminated(run.info.run_id)
        # podium measures it, reading the model from the server and logging its benchmark run there
        bench_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PODIUM_TRACKING_URI": uri}
        bench = subprocess.run(
            [str(VENV_BIN / "podium"), "bench", "--run-id", run.info.run_id, "--iterations", "20", "--out", "out"],
            cwd=tmp_path,
            env=bench_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-3000:]
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "tags.`code.stage` = 'benchmark'"
        )
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        benchmark = runs[0]
        assert benchmark.info.artifact_uri.startswith("mlflow-artifacts:")  # served: clients never see the folder
        stored = artifacts / benchmark.info.experiment_id / benchmark.info.run_id / "artifacts" / "benchmark.json"
        summary = json.loads(stored.read_text())
        assert summary["benchmark_config_hash"] == benchmark.data.tags["code.benchmark.config_hash"]
        # the runs are rows of the recipe's PostgreSQL database
        rows = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-h",
                str(data),
                "-p",
                str(pg_port),
                "-d",
                "mlflow",
                "-tAc",
                "SELECT run_uuid FROM runs",
            ],
            user=PG_USER,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rows.returncode == 0, rows.stderr
        assert set(rows.stdout.split()) == {run.info.run_id, benchmark.info.run_id}
    finally:
        if proc is not None:
            stop_group(proc.pid)  # the mlflow server
        stop_postmaster(data)
        shutil.rmtree(folder, ignore_errors=True)


def stop_postmaster(data: Path) -> None:
    """PostgreSQL detaches from the block (pg_ctl starts it in a session of its own): stopped by the PID in its
    ``postmaster.pid`` (SIGQUIT: immediate shutdown, its children with it)."""
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    if not wait_until(lambda: not alive(pid), 30, 0.1):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not alive(pid), 10, 0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.server
def test_the_cpu_triton_recipe(tmp_path: Path) -> None:
    cached = ensure_tritonserver().parents[3]  # the wheel, downloaded once for the tests
    wheel = sorted((cached / "wheel").glob("nvidia_pytriton-*.whl"))[0]
    # a fresh TRITON_HOME holding only the downloaded wheel: the block unpacks it and sets up the Python backend
    home = tmp_path / "pytriton"
    (home / "wheel").mkdir(parents=True)
    (home / "wheel" / wheel.name).symlink_to(wheel)
    model = traced(BertStyleTagger(vocab=1000), tmp_path / "tagger" / "model.pt")
    http, grpc = free_ports(2)
    script = substituted(
        bash_block(TRITON_RECIPE),
        {"8000": str(http), "8001": str(grpc), "$HOME/triton-models": str(tmp_path / "models"), "model.pt": str(model)},
    )
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "TRITON_HOME": str(home)}
    proc = None
    try:
        proc, output = run_block(script, tmp_path, env, timeout=400)
        assert proc.returncode == 0, f"{output}\n--- tritonserver.log:\n{tail(tmp_path / 'tritonserver.log')}"
        assert (home / "pytriton" / "tritonserver" / "backends" / "python" / "triton_python_backend_stub").exists()
        summary = json.loads((tmp_path / "benchmark.json").read_text())
        device = summary["device"]
        assert (device["server"], device["deploy"], device["url"]) == ("triton", "python", f"http://127.0.0.1:{http}")
        assert summary["batches"]["1"]["count"] >= 20 and summary["batches"]["1"]["p50_ms"] > 0
    finally:
        if proc is not None:
            stop_group(proc.pid)  # tritonserver


def test_the_adopt_recipes_snippet_is_the_tested_example() -> None:
    """The recipe's Python is the excerpt of examples/plain_mlflow_study.py that tests/integration/test_plain_runs.py
    runs (MLflowCallback and podium's hook in one study)."""
    example = (REPO / "examples" / "plain_mlflow_study.py").read_text()
    excerpt = example[example.index("# --8<-- [start:readme]\n") + 24 : example.index("    # --8<-- [end:readme]")]
    text = (REPO / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text[text.index(ADOPT_RECIPE) :], re.S).group(1)
    assert snippet.strip() == textwrap.dedent(excerpt).strip()


@pytest.mark.server
@pytest.mark.timeout(900)
def test_the_adopt_an_existing_study_recipe(tmp_path: Path, sqlite_store_uri: str) -> None:
    """An existing study's runs (plain mlflow and torch, no podium tag) in a sqlite store; the recipe, run in the
    folder beside it, starts redis-server, a worker and an aggregator, backfills, waits and selects."""
    from tests.integration.test_plain_runs import SMALL_BENCHMARK, train

    if not shutil.which("redis-server"):
        unavailable("redis-server is not installed (apt-get install -y redis-server)")
    store = sqlite_store_uri
    runs = train(store, tmp_path / "training", "bert-tagger", "--runs", "3")["model"]  # val_f1 0.70, 0.75, 0.80
    # the user's own benchmark.yaml (the recipe writes only best_model_selection.yaml): short measurements
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "benchmark.yaml").write_text(SMALL_BENCHMARK)
    (port,) = free_ports(1)
    script = substituted(
        bash_block(ADOPT_RECIPE), {"6379": str(port), "$PWD/mlflow.db": store.removeprefix("sqlite:///")}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PODIUM_", "MLFLOW_"))}
    env |= {"PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "200"}  # a wide terminal
    proc = None
    try:
        proc, output = run_block(script, tmp_path, env, timeout=800)
        assert proc.returncode == 0, f"{output[-5000:]}\n--- worker.log:\n{tail(tmp_path / 'worker.log')}"
        assert "3 benchmark request(s) enqueued" in output
        assert "val_f1" in (tmp_path / "config" / "best_model_selection.yaml").read_text()
        # select: the study by its label, the best by val_f1 (the 0.80 run), named by its backbone
        selected = output[output.index("3 benchmark request(s) enqueued") :]
        assert re.search(r"^bert-tagger · local · torchscript · batch 1 +study [0-9a-f]{12}", selected, re.M), selected
        (best,) = [line for line in selected.splitlines() if "★" in line]
        assert runs[-1][:12] in best and "tagger-24" in best and "0.8000" in best, selected
        client = MlflowClient(store)
        benchmarks = client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "tags.`code.stage` = 'benchmark'"
        )
        assert {b.data.tags["code.benchmark.champion_run_id"] for b in benchmarks} == set(runs)
        for run_id in runs:  # the write-back: latency beside val_f1 in the run's own row
            run = client.get_run(run_id)
            assert "podium.latency_batch_1_p50_ms" in run.data.metrics and "val_f1" in run.data.metrics
            assert run.data.tags["podium.benchmark_run_id"] in {b.info.run_id for b in benchmarks}
    finally:
        if proc is not None:
            stop_group(proc.pid)  # redis-server, the worker, the aggregator
