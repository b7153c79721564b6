"""An Optuna study that logs to MLflow the common way, benchmarked by podium with no change to how it logs:
``optuna_integration.MLflowCallback`` writes one run per trial (params, the objective under ``metric_name``),
the objective logs its model with ``mlflow.pytorch.log_model``, and podium's hook is a second callback.

    python examples/plain_mlflow_study.py --trials 3

The runs carry no podium tag: podium adopts them as they are (their study is the experiment the callback names
after the study, their model the logged one, traced to TorchScript by the worker). Set ``objective.metric:
val_f1`` in best_model_selection.yaml so podium ranks by the metric this study logs. Put podium's hook after
MLflowCallback: the callback ends the trial's run, and the hook sends only FINISHED runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import random

import mlflow
import mlflow.pytorch
import optuna
import torch
from optuna_integration import MLflowCallback
from torch import nn

from podium.producers.hooks import BenchmarkHook

VOCAB, LABELS, LENGTH = 200, 4, 12


class Tagger(nn.Module):
    def __init__(self, width: int, depth: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)))
        self.head = nn.Linear(width, LABELS)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(input_ids)))


def make_rows(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)
    ids = [[rng.randrange(1, VOCAB) for _ in range(LENGTH)] for _ in range(n)]
    return torch.tensor(ids), torch.tensor([[i % LABELS for i in row] for row in ids])


def train(width: int, depth: int, data: tuple, val: tuple) -> tuple[nn.Module, float]:
    torch.manual_seed(0)
    model = Tagger(width, depth)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data[0]).reshape(-1, LABELS), data[1].reshape(-1))
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(val[0]).argmax(-1)
    f1s = []
    for label in range(LABELS):
        tp = ((pred == label) & (val[1] == label)).sum().item()
        fp = ((pred == label) & (val[1] != label)).sum().item()
        fn = ((pred != label) & (val[1] == label)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return model.eval(), sum(f1s) / LABELS


def main(argv: list[str] | None = None) -> tuple[optuna.Study, BenchmarkHook]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--study-name", default="plain-tagger")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data, val = make_rows(256, seed=1), make_rows(64, seed=2)

    # --8<-- [start:readme]
    mlflc = MLflowCallback(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"), metric_name="val_f1")
    hook = BenchmarkHook.from_settings()  # after MLflowCallback: it finds the trial's FINISHED run

    @mlflc.track_in_mlflow()  # the objective's MLflow calls land in the trial's run
    def objective(trial: optuna.Trial) -> float:
        width = trial.suggest_categorical("width", [8, 16, 32])
        depth = trial.suggest_int("depth", 1, 2)
        model, f1 = train(width, depth, data, val)
        mlflow.log_param("backbone", f"tagger-w{width}-d{depth}")
        mlflow.pytorch.log_model(model, name="model", serialization_format="pickle")
        return f1

    study = optuna.create_study(study_name=args.study_name, direction="maximize")
    study.optimize(objective, n_trials=args.trials, callbacks=[mlflc, hook])
    # --8<-- [end:readme]

    hook.close()
    print(
        f"{len(study.trials)} trials; {len(hook.enqueued)} benchmark request(s) sent, {len(hook.missed)} missed, "
        f"{len(hook.refused)} refused"
    )
    return study, hook


if __name__ == "__main__":
    main()
