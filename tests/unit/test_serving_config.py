"""A model's Triton config served another way (instance count, max_batch_size, dynamic batching and its queue
delay), in the JSON ``load_model`` takes and as ``config.pbtxt``; ``podium tune``'s one-line refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest

from podium.backends.base import BackendError, InputSpec
from podium.backends.triton_deploy import model_config, to_pbtxt, with_serving

IDS = [InputSpec("input_ids", "INT64", (-1, -1))]
SCORES = [InputSpec("scores", "FP32", (-1, -1))]


def test_a_serving_config_rewrites_only_what_it_names() -> None:
    base = model_config("m", "python", IDS, SCORES, 8) | {"parameters": {"k": {"string_value": "v"}}}
    served = with_serving(base, 3, 16, True, 250)
    assert served["max_batch_size"] == 16 and served["instance_group"] == [{"kind": "KIND_AUTO", "count": 3}]
    assert served["dynamic_batching"] == {"max_queue_delay_microseconds": 250}
    assert {k: v for k, v in served.items() if k not in ("max_batch_size", "instance_group", "dynamic_batching")} == {
        k: v for k, v in base.items() if k not in ("max_batch_size", "instance_group")
    }
    assert "dynamic_batching" not in with_serving(served, 1, 8, False, 250)  # off: no batcher, whatever the delay
    assert with_serving(base, 1, 8, True, 0)["dynamic_batching"] == {}
    text = to_pbtxt(served)
    assert "max_batch_size: 16\n" in text and "instance_group [{ kind: KIND_AUTO count: 3 }]" in text
    assert "dynamic_batching { max_queue_delay_microseconds: 250 }" in text
    assert 'parameters: { key: "k" value: { string_value: "v" } }' in text
    assert "dynamic_batching { }" in to_pbtxt(with_serving(base, 1, 8, True, 0))
    with pytest.raises(BackendError, match="serving configs are for batching models"):
        with_serving(model_config("m", "python", IDS, SCORES, 0), 1, 8, True, 0)


def podium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podium", "tune", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--no-log",), "give the model: one of --run-id RUN and --model-uri URI"),
        (("--model-uri", "m.pt", "--no-log"), "pass --url HOST:PORT (or set PODIUM_TRITON_URL), or --target T"),
        (("--model-uri", "m.pt", "--no-log", "--url", "127.0.0.1:1", "--sla-p99-ms", "9", "--dynamic-batching", "yes"),
         "--dynamic-batching must be comma-separated on/off such as on,off, got 'yes'"),
        (("--model-uri", "m.pt", "--no-log", "--url", "127.0.0.1:1"), "pass --sla-p99-ms"),
        (("--model-uri", "m.pt", "--no-log", "--url", "127.0.0.1:1", "--sla-p99-ms", "9", "--instance-count", "0,1"),
         "instance_count values must be whole numbers >= 1, got [0, 1]"),
    ],
)  # fmt: skip
def test_bad_tune_options_fail_in_one_line(args: tuple[str, ...], message: str) -> None:
    out = podium(*args)
    assert out.returncode == 2, out.stderr
    assert message in " ".join(out.stderr.split()) and len(out.stderr.strip().splitlines()) == 1, out.stderr
