"""docker-compose.yml is what an operator would run on a multi-GPU box: it validates (with the shipped
``.env.example``), and it has the production shape. The podium services' commands run in the image's install:
tests/integration/test_install.py."""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO
from tests.servers import unavailable

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"


def example_env() -> dict[str, str]:
    lines = [line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line and line[0] != "#"]
    return {k.strip(): v.strip() for k, v in lines}


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def podium_services() -> dict[str, list[str]]:
    doc = yaml.safe_load(COMPOSE.read_text())
    return {
        name: svc["command"] for name, svc in doc["services"].items() if str(svc.get("image", "")).startswith("podium:")
    }


def test_compose_file_validates_with_the_example_env() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        unavailable("docker-compose is not installed (apt-get install -y --no-install-recommends docker-compose)")
    env = {**os.environ, **example_env()}
    out = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    bare = {k: v for k, v in os.environ.items() if k not in example_env()}
    refused = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60, env=bare
    )
    assert refused.returncode != 0 and "set REDIS_PASSWORD in .env" in refused.stderr  # no default password


def test_no_obsolete_version_key() -> None:
    assert "version" not in yaml.safe_load(COMPOSE.read_text())


def test_mlflow_is_a_server_on_postgresql_pinned_to_the_clients_version(services: dict) -> None:
    command = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri postgresql+psycopg2://" in command and "@postgres:5432/" in command
    assert "--serve-artifacts" in command
    dockerfile = (REPO / services["mlflow"]["build"]["dockerfile"]).read_text()
    (server,) = re.findall(r'"mlflow==([\d.]+)"', dockerfile)
    client = importlib.metadata.version("mlflow-skinny")
    assert server.split(".")[:2] == client.split(".")[:2], (server, client)
    assert services["mlflow"]["image"].endswith(f":{server}")
    assert services["mlflow"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


@pytest.mark.parametrize("name", ["redis", "postgres", "mlflow", "triton-gpu0", "triton-gpu1"])
def test_infrastructure_has_healthchecks(services: dict, name: str) -> None:
    assert services[name]["healthcheck"]["test"]


def test_podium_services_wait_for_healthy_infrastructure(services: dict) -> None:
    for name in podium_services():
        deps = services[name]["depends_on"]
        assert deps["redis"] == deps["mlflow"] == {"condition": "service_healthy"}, name


def gpu_ids(service: dict) -> list[str]:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return [i for d in devices for i in d.get("device_ids", [])]


def test_one_worker_per_gpu_each_beside_its_own_triton(services: dict) -> None:
    workers = {n: s for n, s in services.items() if n.startswith("worker-gpu")}
    assert len(workers) >= 2
    seen = set()
    for name, worker in workers.items():
        (gpu,) = gpu_ids(worker)  # pinned to exactly one GPU
        assert gpu not in seen, f"{name} shares GPU {gpu}"
        seen.add(gpu)
        host, _, port = worker["environment"]["PODIUM_TRITON_URL"].partition(":")
        assert gpu_ids(services[host]) == [gpu], f"{name}'s Triton {host} is not on GPU {gpu}"
        assert worker["depends_on"][host] == {"condition": "service_healthy"}
        assert port == "8000" and "--model-control-mode=explicit" in services[host]["command"]
        assert "cu" in worker["build"]["args"]["TORCH_INDEX"] and worker["image"] == "podium:cuda"


def test_cpu_services_use_cpu_torch(services: dict) -> None:
    for name in ("worker-cpu", "aggregator"):
        assert (
            services[name]["build"]["args"]["TORCH_INDEX"].endswith("/cpu") and services[name]["image"] == "podium:cpu"
        )


def test_ports_are_published_on_loopback_only(services: dict) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_redis_is_durable_strict_and_password_protected(services: dict) -> None:
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "REDIS_PASSWORD" in command[command.index("--requirepass") + 1]
    url = services["aggregator"]["environment"]["PODIUM_REDIS_URL"]
    assert url.startswith("redis://:${REDIS_PASSWORD")
    assert set(example_env()) >= {"REDIS_PASSWORD", "POSTGRES_PASSWORD"}


def test_the_install_tests_install_what_the_dockerfile_installs() -> None:
    """The install test's venv (tests/venvs.py) holds the image's pip lines, torch aside from its index."""
    from tests.venvs import DOCKERFILE_INSTALL

    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")  # continued lines joined
    runs = [line.removeprefix("RUN ") for line in text.splitlines() if line.startswith("RUN pip install")]
    installs = []
    for command in (c for run in runs for c in run.split("&&")):
        args = shlex.split(command)[2:]  # what follows "pip install"
        options_values = {value for option, value in itertools.pairwise(args) if option.startswith("--")}
        installs.append([a for a in args if not a.startswith("--") and a not in options_values])
    assert installs == [list(i) for i in DOCKERFILE_INSTALL], installs
