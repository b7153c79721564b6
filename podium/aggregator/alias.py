"""On a new best, point an MLflow registered-model alias (``champion``) at the best model's artifact."""

from __future__ import annotations

import logging

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from podium.core.records import DEFAULT_ARTIFACT_PATH
from podium.core.safety import require_safe
from podium.core.selection import Selection

log = logging.getLogger(__name__)

#: The alias deployment services resolve (``models:/<name>@champion``).
DEFAULT_ALIAS = "champion"


class ChampionAlias:
    """``name_template`` may use ``{study}`` and ``{config}`` (12-character prefixes), e.g.
    ``tagger-{study}-{config}``: one registered model per scope, since only like-with-like compete."""

    def __init__(
        self,
        client: MlflowClient,
        name_template: str,
        artifact_path: str = DEFAULT_ARTIFACT_PATH,
        alias: str = DEFAULT_ALIAS,
    ):
        self.client, self.name_template, self.artifact_path, self.alias = client, name_template, artifact_path, alias

    def model_name(self, sel: Selection) -> str:
        name = self.name_template.format(
            study=sel.study_key_hash[:12], config=(sel.benchmark_config_hash or "legacy")[:12]
        )
        return require_safe(name, "registered model name")

    def __call__(self, sel: Selection) -> str | None:
        """Set the alias; returns the model version it now points at (None if MLflow refused)."""
        name = self.model_name(sel)
        run_id = require_safe(sel.best.artifact_run_id, "artifact run id")
        try:
            try:
                self.client.get_registered_model(name)
            except MlflowException:
                self.client.create_registered_model(name, description="Best model chosen by podium")
            versions = self.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
            version = (
                versions[0].version
                if versions
                else self.client.create_model_version(
                    name,
                    source=f"runs:/{run_id}/{self.artifact_path}",
                    run_id=run_id,
                    tags={
                        "podium.trial_key_hash": sel.best.trial_key_hash,
                        "podium.benchmark_key": sel.best.benchmark_key,
                    },
                ).version
            )
            self.client.set_registered_model_alias(name, self.alias, version)
        except MlflowException as exc:  # a convenience for deployers: never take the aggregator down
            log.warning("Could not set %s@%s to run %s: %s", name, self.alias, run_id, exc.message)
            return None
        log.info("%s@%s -> version %s (run %s).", name, self.alias, version, run_id)
        return str(version)
