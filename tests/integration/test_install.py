"""What users install is what runs: a plain ``pip install .`` and the Dockerfile's install, each in a
fresh venv, run podium's commands; a command that needs a missing extra names it in one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from podium.demo.synthetic_store import StoreSpec, generate_store
from tests.venvs import BARE_INSTALL, DOCKERFILE_INSTALL, ONNX_TEXT_INSTALL, has_module, venv_with

pytestmark = pytest.mark.install


@pytest.fixture(scope="module")
def bare() -> Path:
    return venv_with("bare", *BARE_INSTALL)


def run(bin_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "podium"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PODIUM_REDIS_URL": "redis://127.0.0.1:1/0", **(env or {})},
    )


def test_a_plain_install_has_no_extra(bare: Path) -> None:
    assert not any(has_module(bare, m) for m in ("torch", "tritonclient", "optuna", "matplotlib"))


@pytest.mark.parametrize("command", [[], ["worker"], ["aggregator"], ["select"], ["bench"], ["status"], ["demo"]])
def test_every_command_answers_help_on_a_plain_install(bare: Path, command: list[str]) -> None:
    out = run(bare, *command, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_select_works_on_a_plain_install(bare: Path, store_uri: str) -> None:
    generate_store(store_uri, StoreSpec(studies=1, trials_per_study=3, benchmarks_per_trial=2))
    out = run(bare, "select", "--tracking-uri", store_uri, "--json")
    assert out.returncode == 0, out.stderr
    assert '"selections"' in out.stdout


def test_status_says_redis_is_down_in_one_line(bare: Path) -> None:
    out = run(bare, "status")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Redis" in out.stderr, out.stderr


@pytest.mark.parametrize(("command", "extra"), [(["demo", "--quick"], "demo"), (["report"], "demo")])
def test_a_command_needing_an_extra_names_it(bare: Path, store_uri: str, command: list[str], extra: str) -> None:
    generate_store(store_uri, StoreSpec(studies=1, trials_per_study=2, benchmarks_per_trial=1))
    out = run(bare, *command, env={"PODIUM_TRACKING_URI": store_uri})
    assert out.returncode == 2, out.stderr
    assert f"pip install 'podium[{extra}]'" in out.stderr and out.stderr.strip().count("\n") == 0, out.stderr


def test_bench_on_the_local_backend_names_the_torch_extra(bare: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"not used: the extra is missing first")
    out = run(bare, "bench", "--model-uri", str(model), "--no-log", "--backend", "local")
    assert out.returncode == 2
    assert "pip install 'podium[torch]'" in out.stderr, out.stderr


def test_the_onnx_and_text_extras_measure_an_onnx_model_on_texts_without_torch(tmp_path: Path) -> None:
    """README's ``pip install 'podium[onnx]'`` and ``'podium[text]'``: an exported ONNX tagger measured with
    ``podium bench`` on a JSONL of texts through a tokenizer.json, padded to each batch's longest text."""
    import json

    from tests.integration.test_lengths import texts, word_level_tokenizer
    from tests.token_models import BertStyleTagger, exported_onnx

    venv = venv_with("onnx-text", *ONNX_TEXT_INSTALL)
    assert has_module(venv, "onnxruntime") and has_module(venv, "tokenizers") and not has_module(venv, "torch")
    model = exported_onnx(BertStyleTagger(), tmp_path / "model.onnx")
    tokenizer = word_level_tokenizer(tmp_path / "tokenizer.json")
    data = texts(tmp_path / "texts.jsonl", [3, 9, 17, 30])
    args = ["--model-uri", str(model), "--no-log", "--batch-sizes", "1,2", "--test-data", str(data)]
    out = run(venv, "bench", *args, "--tokenizer", str(tokenizer), "--padding", "longest", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "benchmark.json").read_text())
    assert summary["device"]["format"] == "onnx" and "onnxruntime" in summary["device"]["summary"]
    lengths = summary["batches"]["1"]["lengths"]
    assert lengths["padding"] == "longest" and lengths["max_tokens"] == 30, lengths


def test_the_dockerfile_install_runs_the_compose_services(tmp_path: Path, store_uri: str) -> None:
    """Exactly what the image holds (torch + .[torch,triton,onnx,text], no demo or dev extras): each compose service's command
    answers, and the worker and the aggregator start and serve against a real Redis and MLflow store."""
    import redis

    from podium.coordination import keys
    from tests.integration.test_compose import podium_services
    from tests.servers import spawn, start_redis, wait_until

    image = venv_with("dockerfile", *DOCKERFILE_INSTALL)
    assert all(has_module(image, m) for m in ("torch", "tritonclient", "onnxruntime", "tokenizers", "pandas"))
    assert not has_module(image, "optuna")
    for service, command in sorted(podium_services().items()):
        out = run(image, *command, "--help")
        assert out.returncode == 0, f"{service}: podium {' '.join(command)}: {out.stderr}"
    server = start_redis(tmp_path / "redis")
    env = {**os.environ, "PODIUM_REDIS_URL": server.url, "PODIUM_TRACKING_URI": store_uri, "PYTHONUNBUFFERED": "1"}
    processes = []
    try:
        for name in ("worker", "aggregator"):
            (tmp_path / name).mkdir()
            processes.append(spawn([str(image / "podium"), name], tmp_path / name, env=env))
        client = redis.Redis.from_url(server.url, decode_responses=True)
        # the worker's queue binding and the aggregator's leader lock: both up and serving
        assert wait_until(
            lambda: client.exists("_kombu.binding.podium.cpu") and client.exists(keys.AGGREGATOR_LEADER), 120
        ), [p.log() for p in processes]
        assert all(p.proc.poll() is None for p in processes)
    finally:
        for p in processes:
            p.stop()
        server.stop()
