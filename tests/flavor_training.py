"""Training code that logs its model with MLflow 3's other formats: ``mlflow.pytorch.log_model`` in the ``pt2``
(``torch.export``) serialization, and ``mlflow.onnx.log_model`` of a ``torch.onnx.export``. Only mlflow, torch
and onnx; no podium import.

    python tests/flavor_training.py STORE_URI EXPERIMENT

Prints ``pt2 <run id>`` and ``onnx <run id>``, one a line.
"""

import sys
import tempfile
from pathlib import Path

import mlflow
import mlflow.onnx
import mlflow.pytorch
import numpy as np
import onnx
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

# the repository root instead of tests/, whose triton.py would shadow the package torch.export imports
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from tests.token_models import BertStyleTagger, exported_onnx  # noqa: E402


def main() -> None:
    store, experiment = sys.argv[1:3]
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment(experiment)
    ids = np.ones((2, 8), dtype=np.int64)
    # pt2 needs a tuple of arrays (one per forward argument, batch > 1) and a TensorSpec signature: MLflow infers
    # it from the example only where scipy is installed (full mlflow), so it is given here.
    tokens = TensorSpec(np.dtype("int64"), (-1, -1))
    signature = ModelSignature(
        Schema(
            [
                TensorSpec(tokens.type, tokens.shape, "input_ids"),
                TensorSpec(tokens.type, tokens.shape, "attention_mask"),
            ]
        ),
        Schema([TensorSpec(np.dtype("float32"), (-1, -1, 5))]),
    )
    with mlflow.start_run() as run:
        mlflow.log_params({"backbone": "tagger-pt2"})
        mlflow.log_metric("val_f1", 0.8)
        mlflow.pytorch.log_model(
            BertStyleTagger(vocab=50).eval(),
            name="model",
            serialization_format="pt2",
            input_example=(ids, ids),
            signature=signature,
        )
    print("pt2", run.info.run_id, flush=True)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        mlflow.log_params({"backbone": "tagger-onnx"})
        mlflow.log_metric("val_f1", 0.7)
        path = exported_onnx(BertStyleTagger(vocab=50), Path(tmp) / "model.onnx")
        mlflow.onnx.log_model(onnx.load(str(path)), name="model")
    print("onnx", run.info.run_id, flush=True)


if __name__ == "__main__":
    main()
