"""docker-compose.yml validates and has the production shape (the services' commands run in the image's
install: tests/integration/test_install.py)."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from tests.conftest import REPO
from tests.servers import unavailable

COMPOSE = REPO / "docker-compose.yml"


def test_compose_file_validates() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        unavailable("docker-compose is not installed (apt-get install -y --no-install-recommends docker-compose)")
    out = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def podium_services() -> dict[str, list[str]]:
    doc = yaml.safe_load(COMPOSE.read_text())
    return {
        name: svc["command"]
        for name, svc in doc["services"].items()
        if svc.get("image") == "podium:latest" or svc.get("build")
    }


def test_the_expected_services_exist() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"redis", "mlflow", "tritonserver", "worker-gpu-h200", "aggregator"} <= set(services)
    assert "--model-control-mode=explicit" in services["tritonserver"]["command"]
    assert "noeviction" in services["redis"]["command"] and "--appendonly" in services["redis"]["command"]
    gpu = services["tritonserver"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert set(podium_services()) == {"worker-gpu-h200", "worker-cpu", "aggregator"}
