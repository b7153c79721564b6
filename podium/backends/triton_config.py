"""Triton model configuration for deploying a TorchScript artifact through the model-control API (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from podium.backends.base import InputSpec


def model_config(name: str, inputs: Sequence[InputSpec], outputs: Sequence[InputSpec], max_batch_size: int) -> dict:
    """The JSON form ``load_model(config=...)`` takes. Dims exclude the batch dimension."""

    def tensor(spec: InputSpec) -> dict[str, Any]:
        return {"name": spec.name, "data_type": f"TYPE_{spec.datatype}", "dims": list(spec.shape[1:])}

    return {
        "name": name,
        "platform": "pytorch_libtorch",
        "max_batch_size": max_batch_size,
        "input": [tensor(s) for s in inputs],
        "output": [tensor(s) for s in outputs],
        "instance_group": [{"kind": "KIND_AUTO", "count": 1}],
    }


def to_pbtxt(config: dict) -> str:
    """The same config as ``config.pbtxt`` text, for the artifact and for a model repository."""
    lines = [
        f'name: "{config["name"]}"',
        f'platform: "{config["platform"]}"',
        f"max_batch_size: {config['max_batch_size']}",
    ]
    for kind in ("input", "output"):
        for t in config[kind]:
            dims = ", ".join(str(d) for d in t["dims"])
            lines.append(f'{kind} [{{ name: "{t["name"]}" data_type: {t["data_type"]} dims: [ {dims} ] }}]')
    lines.append("instance_group [{ kind: KIND_AUTO count: 1 }]")
    return "\n".join(lines) + "\n"
