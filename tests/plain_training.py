"""A training script as a team already has it: only mlflow and torch, no podium import, no podium tag.

    python tests/plain_training.py STORE_URI EXPERIMENT --runs 3 [--no-model-run]

Writes one FINISHED run per width with params, a ``val_f1`` metric and ``mlflow.pytorch.log_model`` of an eager
``nn.Module``; with ``--no-model-run``, one more run without a model. Prints each run id on its own line
(``<kind> <run id>``).
"""

import argparse

import mlflow
import mlflow.pytorch
import torch


class Tagger(torch.nn.Module):
    """A token classifier: embeddings, a hidden layer, per-token labels."""

    def __init__(self, width: int, vocab: int = 50, labels: int = 3):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.hidden = torch.nn.Linear(width, width)
        self.out = torch.nn.Linear(width, labels)

    def forward(self, input_ids, attention_mask):
        x = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        return self.out(torch.relu(self.hidden(x)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("experiment")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-model-run", action="store_true")
    args = parser.parse_args()
    mlflow.set_tracking_uri(args.store)
    mlflow.set_experiment(args.experiment)
    for i in range(args.runs):
        width = 8 * (i + 1)
        with mlflow.start_run() as run:
            mlflow.log_params({"backbone": f"tagger-{width}", "lr": 0.001 * (i + 1)})
            mlflow.log_metric("val_f1", 0.70 + 0.05 * i)
            mlflow.log_metric("loss", 1.0 / (i + 1))
            mlflow.pytorch.log_model(Tagger(width), name="model", serialization_format="pickle")
        print("model", run.info.run_id, flush=True)
    if args.no_model_run:
        with mlflow.start_run() as run:
            mlflow.log_params({"backbone": "tagger-none", "lr": 0.1})
            mlflow.log_metric("val_f1", 0.99)
        print("nomodel", run.info.run_id, flush=True)


if __name__ == "__main__":
    main()
