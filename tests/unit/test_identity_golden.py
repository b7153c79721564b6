"""Golden values of benchmark identity: the default config's ``benchmark_config_hash`` and one full
``benchmark_key``, each reached by the road the producer, the backfill and the worker take.

These numbers are written in MLflow tags of every benchmark run measured under the default config. A change
that alters them makes every such run stop matching (all of them get measured again). If that change is meant,
update the values here on purpose, say why in the commit, and bump ``KEY_VERSION`` if the key's recipe changed;
if it is not meant, the change is a bug.
"""

from __future__ import annotations

import ast
from pathlib import Path

from podium.core.config import BenchmarkConfig
from podium.core.identity import canonical_json, measurement_settings
from podium.core.records import Champion
from podium.core.run_tags import identity_for
from podium.producers.enqueue import build_request
from podium.settings.files import config_hash_of, input_fingerprint, load_benchmark_config

ROOT = Path(__file__).resolve().parents[2]

#: ``benchmark_config_hash`` of the built-in defaults (and of config/benchmark.yaml, which states them).
DEFAULT_CONFIG_HASH = "79ee6d59903384748db8d884444efc49ecdff1f14dcae6fbe9b09ee65938ab05"
#: What that hash is the SHA-256 of: shown by the failing assertion, so a diff names the setting that moved.
DEFAULT_SETTINGS_JSON = (
    '{"backend":"local","batch_sizes":[1],"device":"auto","input":"synthetic:seed=0","iterations":100,'
    '"max_length":512,"precision":"fp32","protocol":null,"stability":{"agree_windows":3,"max_contention":0.1,'
    '"max_cv":0.1,"max_ratio":1.1,"max_windows":10},"target":"cpu","threads":1,"warmup_iterations":10}'
)
#: A fixed champion, and the key of benchmarking it under the default config: SHA-256 of the canonical JSON of
#: {benchmark_config_hash, champion_run_id, data_fingerprint, eval_fingerprint, version: 1} (DESIGN.md, Identity),
#: worked out with hashlib and json by hand, not by podium.
CHAMPION = Champion(
    run_id="0123456789abcdef0123456789abcdef",
    study_key_hash="a" * 64,
    trial_key_hash="b" * 64,
    data_fp="sha256:" + "d" * 64,
    eval_fp="sha256:" + "e" * 64,
)
GOLDEN_KEY = "da1642b7d527307f8130da4cd7b47a7abedff4ef1aa5aada8bcd2e69b473d987"


def test_the_default_configs_hash_is_pinned(tmp_path: Path) -> None:
    built_in = load_benchmark_config(None, config_dir=tmp_path)  # no file there: the built-in defaults
    assert built_in == BenchmarkConfig()
    settings = measurement_settings(built_in.benchmarking, input_fingerprint(built_in.benchmarking))
    assert canonical_json(settings) == DEFAULT_SETTINGS_JSON
    assert config_hash_of(built_in) == DEFAULT_CONFIG_HASH


def test_the_shipped_config_file_states_the_defaults() -> None:
    shipped = load_benchmark_config(None, config_dir=ROOT / "config")
    assert config_hash_of(shipped) == DEFAULT_CONFIG_HASH


def test_a_request_under_the_default_config_has_the_pinned_key(tmp_path: Path) -> None:
    config = load_benchmark_config(None, config_dir=tmp_path)
    request = build_request(CHAMPION, config)  # what a producer sends
    assert request.benchmark_key == GOLDEN_KEY
    assert request.verified_identity().key == GOLDEN_KEY  # what a worker recomputes from the request's parts
    assert identity_for(CHAMPION, config_hash_of(config)).key == GOLDEN_KEY  # what backfill and `podium bench` use
    assert request.identity.config_hash == DEFAULT_CONFIG_HASH


def test_only_the_identity_module_hashes_identity() -> None:
    """Identity is computed in one place: besides podium/core/identity.py, only modules that digest file contents
    (input and data fingerprints) import hashlib."""
    digests_files = {"core/identity.py", "settings/files.py", "training/fingerprints.py"}
    importers = set()
    for path in sorted((ROOT / "podium").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        if any(name.split(".")[0] == "hashlib" for name in names):
            importers.add(str(path.relative_to(ROOT / "podium")))
    assert importers <= digests_files, f"hashlib imported outside the identity module: {importers - digests_files}"
