"""The demo's HPO study: Optuna trials of TinyTagger, each logged to MLflow as training code would."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from podium.core.filters import all_of, status_is, tag_eq
from podium.core.identity import study_key_hash, trial_key_hash
from podium.core.records import RUN_ID_ATTR
from podium.demo.data import macro_f1, make_batch
from podium.demo.model import TinyTagger, export

WIDTHS = [16, 32, 64, 128]
DEPTHS = [1, 2, 3]
LEARNING_RATES = [1e-3, 1e-2]
SEARCH_SPACE = {"width": WIDTHS, "depth": DEPTHS, "lr": LEARNING_RATES}
STUDY_NAME = "podium-demo-tagger"


def demo_study_hash() -> str:
    return study_key_hash(STUDY_NAME, SEARCH_SPACE)


def train(width: int, depth: int, lr: float, seconds: float, seed: int) -> tuple[TinyTagger, float]:
    torch.manual_seed(seed)
    model = TinyTagger(width, depth)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tokens, labels = make_batch(gen)
        loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), labels.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        tokens, labels = make_batch(torch.Generator().manual_seed(10_000), batch=256)
        f1 = macro_f1(model(tokens).argmax(-1), labels)
    return model, f1


class DemoStudy:
    """Runs (or resumes) the study; ``on_trial`` hears each finished trial for the live view."""

    def __init__(
        self,
        tracking_uri: str,
        home: Path,
        train_seconds: float,
        seed: int = 0,
        on_trial: Callable[[int, dict, float], None] | None = None,
    ):
        self.client = MlflowClient(tracking_uri)
        self.home = home
        self.train_seconds = train_seconds
        self.seed = seed
        self.on_trial = on_trial
        self.study_hash = demo_study_hash()
        exp = self.client.get_experiment_by_name(STUDY_NAME)
        self.experiment_id = (
            exp.experiment_id if exp else self.client.create_experiment(STUDY_NAME, (home / "artifacts").as_uri())
        )

    def existing_refits(self) -> dict[str, str]:
        """trial_key_hash -> refit run id of trials already trained (a re-run resumes, never retrains)."""
        flt = all_of(
            tag_eq("code.stage", "refit"),
            tag_eq("code.grouping.study_key_hash", self.study_hash),
            status_is("FINISHED"),
        )
        runs = self.client.search_runs([self.experiment_id], flt, max_results=1000)
        return {r.data.tags["code.grouping.trial_key_hash"]: r.info.run_id for r in runs}

    def objective(self, trial: optuna.Trial) -> float:
        width = trial.suggest_categorical("width", WIDTHS)
        depth = trial.suggest_categorical("depth", DEPTHS)
        lr = trial.suggest_categorical("lr", LEARNING_RATES)
        params = {"width": width, "depth": depth, "lr": lr}
        t_hash = trial_key_hash(self.study_hash, {"number": trial.number, **params})
        done = self.existing_refits()
        if t_hash in done:
            trial.set_user_attr(RUN_ID_ATTR, done[t_hash])
            f1 = self.client.get_run(done[t_hash]).data.metrics["macro-f1"]
            if self.on_trial:
                self.on_trial(trial.number, params | {"resumed": True}, f1)
            return f1
        model, f1 = train(width, depth, lr, self.train_seconds, self.seed + trial.number)
        backbone = f"tiny-w{params['width']}-d{params['depth']}"
        tags = {
            "code.grouping.study_key_hash": self.study_hash,
            "code.grouping.trial_key_hash": t_hash,
            "code.fingerprint.data": "synthetic-tagging-v1",
            "code.fingerprint.eval": "val-256-seed10000",
        }
        self._log("hpo_trial", tags, params, backbone, f1)
        refit_id = self._log("refit", tags, params, backbone, f1, model=model)
        trial.set_user_attr(RUN_ID_ATTR, refit_id)
        if self.on_trial:
            self.on_trial(trial.number, params, f1)
        return f1

    def _log(self, stage: str, tags: dict, params: dict, backbone: str, f1: float, model=None) -> str:
        run = self.client.create_run(self.experiment_id, run_name=f"{stage}-{backbone}")
        now = int(time.time() * 1000)
        self.client.log_batch(
            run.info.run_id,
            metrics=[Metric("macro-f1", f1, now, 0)],
            params=[Param(k, str(v)) for k, v in params.items()] + [Param("backbone", backbone)],
            tags=[RunTag("code.stage", stage), *(RunTag(k, v) for k, v in tags.items())],
        )
        if model is not None:
            path = export(model, self.home / "models" / run.info.run_id / "model.pt")
            self.client.log_artifact(run.info.run_id, str(path), "model")
        self.client.set_terminated(run.info.run_id)
        return run.info.run_id

    def run(self, n_trials: int, callbacks: list) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.seed))
        study.optimize(self.objective, n_trials=n_trials, callbacks=callbacks)
        return study
