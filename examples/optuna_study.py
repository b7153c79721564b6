"""A training script wired to podium: an Optuna study of tiny PyTorch token taggers on generated data, every
trial logged to MLflow with podium's tags, a refit run holding the model, the hook benchmarking each trial.

    python examples/optuna_study.py --trials 3

It writes to MLflow's tracking URI (MLFLOW_TRACKING_URI, else PODIUM_TRACKING_URI, else podium's embedded
sqlite store) and sends benchmark requests to PODIUM_REDIS_URL, where `podium worker` and `podium aggregator`
run (README, "Run it for real"). With Redis or MLflow down, the study still finishes: `podium backfill` sends
what the hook could not.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

import mlflow
import optuna
import torch
from torch import nn

import podium.training as pt

SEARCH_SPACE = {"width": [8, 16, 32], "depth": [1, 2]}  # the study tries each combination once
VOCAB, LABELS, LENGTH = 200, 4, 12


class Tagger(nn.Module):
    def __init__(self, width: int, depth: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth)))
        self.head = nn.Linear(width, LABELS)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(input_ids)))


def make_rows(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """Token ids and their tags (a token's tag is a fixed function of the token: learnable)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        ids = [rng.randrange(1, VOCAB) for _ in range(LENGTH)]
        rows.append((ids, [i % LABELS for i in ids]))
    return rows


def train(params: dict, train_rows: list, val_rows: list) -> tuple[nn.Module, float]:
    torch.manual_seed(0)
    model = Tagger(params["width"], params["depth"])
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    x = torch.tensor([ids for ids, _ in train_rows])
    y = torch.tensor([tags for _, tags in train_rows])
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x).reshape(-1, LABELS), y.reshape(-1))
        loss.backward()
        opt.step()
    with torch.no_grad():
        vx = torch.tensor([ids for ids, _ in val_rows])
        vy = torch.tensor([tags for _, tags in val_rows])
        pred = model(vx).argmax(-1)
    f1s = []
    for label in range(LABELS):
        tp = ((pred == label) & (vy == label)).sum().item()
        fp = ((pred == label) & (vy != label)).sum().item()
        fn = ((pred != label) & (vy == label)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return model.eval(), sum(f1s) / LABELS


def main(argv: list[str] | None = None) -> tuple[optuna.Study, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--study-name", default="tiny-tagger")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if "MLFLOW_TRACKING_URI" not in os.environ:
        mlflow.set_tracking_uri(pt.default_tracking_uri())
    mlflow.set_experiment(args.study_name)
    train_rows, val_rows = make_rows(256, seed=1), make_rows(64, seed=2)
    tmp = tempfile.mkdtemp(prefix="podium-example-")  # the models, until they are logged
    atexit.register(shutil.rmtree, tmp, True)

    # --8<-- [start:readme]
    hook = pt.BenchmarkHook.from_settings()  # PODIUM_REDIS_URL, config/benchmark.yaml; never stops the study
    study_hash = pt.study_key_hash(args.study_name, SEARCH_SPACE)
    data_fp, eval_fp = pt.fingerprint(train_rows), pt.fingerprint(val_rows)

    def objective(trial: optuna.Trial) -> float:
        params = {
            "width": trial.suggest_categorical("width", SEARCH_SPACE["width"]),
            "depth": trial.suggest_categorical("depth", SEARCH_SPACE["depth"]),
        }
        with pt.trial_run(trial, study_hash, data_fp=data_fp, eval_fp=eval_fp):  # tags from the sampled params
            model, f1 = train(params, train_rows, val_rows)
            mlflow.log_metric("macro-f1", f1)
            mlflow.log_param("backbone", f"tagger-w{params['width']}-d{params['depth']}")
        with pt.refit_run(trial, study_hash, data_fp=data_fp, eval_fp=eval_fp):  # holds the model podium measures
            path = pt.save_torchscript(
                model,
                Path(tmp) / f"trial-{trial.number}" / "model.pt",
                inputs=[{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1], "vocab_size": VOCAB}],
                outputs=[{"name": "logits", "datatype": "FP32", "shape": [-1, -1, LABELS]}],
            )
            mlflow.log_artifact(str(path), "model")
        return f1

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GridSampler(SEARCH_SPACE, seed=0))
    study.optimize(objective, n_trials=args.trials, callbacks=[hook])
    # --8<-- [end:readme]

    hook.close()
    print(f"{len(study.trials)} trials; {len(hook.enqueued)} benchmark request(s) sent, {len(hook.missed)} missed")
    return study, hook


if __name__ == "__main__":
    main()
