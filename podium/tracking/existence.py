"""Is this benchmark already done? The existence check on an MLflow store: a FINISHED run tagged with the key
(one indexed query), else, only in a study that has any, a legacy run of the trial written without the tag.

The rule itself is :mod:`podium.core.existing`; :func:`answer` puts the two look-ups together and says what it
found in the log, the same way for every store (the in-memory one in :mod:`podium.testing` too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from podium.core.existing import BenchmarkIndex, ExistingBenchmark, Lookup, holds_result, pick_with_result
from podium.core.filters import all_of, status_is, tag_eq, tag_is_null
from podium.core.identity import BenchmarkIdentity
from podium.core.records import Champion
from podium.core.store import DEFAULT_RESULT_METRICS
from podium.core.tags import TagsRegistry
from podium.tracking.tables import StoredRun

if TYPE_CHECKING:
    from podium.tracking.tracker import MlflowTracking

log = logging.getLogger(__name__)

#: How long "this study has no legacy benchmark runs" is believed before it is asked again.
LEGACY_TTL_S = 300.0
#: FINISHED runs of one key read by the existence check (normally one; more only after force_new runs).
KEY_RUNS_READ = 20


def legacy_filter(tags: TagsRegistry, study: str, trial: str | None = None) -> str:
    """FINISHED benchmark runs of a study (and trial) written without a ``benchmark_key`` tag."""
    clauses = [tag_eq(tags.stage.key, tags.stage.benchmark), tag_eq(tags.grouping.study_key_hash, study)]
    if trial is not None:
        clauses.append(tag_eq(tags.grouping.trial_key_hash, trial))
    return all_of(*clauses, tag_is_null(tags.benchmark.key), status_is("FINISHED"))


def answer(
    keyed: Lookup,
    legacy: Lookup | None,
    identity: BenchmarkIdentity,
    champion: Champion,
    result_metrics: Sequence[str],
) -> ExistingBenchmark | None:
    """The run that answers: the keyed one, else the legacy one (``legacy``: None when the study has no legacy
    runs), warned about when legacy; the runs that matched but hold no result named when nothing answers."""
    if keyed.found is not None:
        return keyed.found
    lookup = keyed
    if legacy is not None:
        lookup = Lookup(legacy.found, keyed.no_result + legacy.no_result)
        if legacy.found is not None:
            warn_fallback(legacy.found, champion)
    warn_no_result(lookup, identity, result_metrics)
    return lookup.found


class ExistenceCheck:
    """The existence check of one tracker; remembers which studies have legacy runs."""

    def __init__(self, tracker: MlflowTracking) -> None:
        self.tracker = tracker
        #: (experiment ids, study) -> (checked at, legacy epoch, has legacy runs)
        self._legacy_studies: dict[tuple[tuple[str, ...], str], tuple[float, int, bool]] = {}
        self._legacy_epoch = 0

    def benchmark_exists(
        self,
        identity: BenchmarkIdentity,
        champion: Champion,
        legacy_epoch: int = 0,
        result_metrics: Sequence[str] = DEFAULT_RESULT_METRICS,
    ) -> ExistingBenchmark | None:
        """PRIMARY: a FINISHED run tagged with the key that holds ``result_metrics`` (one indexed query).
        FALLBACK, only among runs without that tag and only in a study that has any: a legacy run of the same
        trial (and config, when it says one) holding them, with a warning that names the run. A FINISHED run
        that matches but holds no result is no answer: it is named in a warning, and the benchmark measured.

        Whether a study has legacy runs is learned once per (experiments, study) and remembered for
        ``LEGACY_TTL_S`` or until ``legacy_epoch`` changes (``podium backfill`` and the sweeper bump it), so
        a study written only by podium never pays the ``IS NULL`` query, whatever the size of the store."""
        t = self.tracker
        if legacy_epoch != self._legacy_epoch:  # legacy runs may have appeared, in new experiments too
            self._legacy_epoch = legacy_epoch
            t.experiments.forget()
        ids = t.recent_experiment_ids()
        keyed = self.finished_runs_tagged(ids, t.tags.benchmark.key, identity.key, result_metrics)
        legacy = None
        if keyed.found is None and self.study_has_legacy(ids, champion.study_key_hash, legacy_epoch):
            runs = t.search(ids, legacy_filter(t.tags, champion.study_key_hash, champion.trial_key_hash))
            records = [r for r in (t.records.benchmark_record(StoredRun.of(run)) for run in runs) if r]
            legacy = BenchmarkIndex.build(records).find(identity, champion, result_metrics)
        return answer(keyed, legacy, identity, champion, result_metrics)

    def finished_runs_tagged(
        self, experiment_ids: Sequence[str], key: str, value: str, result_metrics: Sequence[str]
    ) -> Lookup:
        """The newest FINISHED run tagged ``key=value`` that holds ``result_metrics``, and those that do not."""
        t = self.tracker
        doing = f"looking up a FINISHED run tagged {key}={value[:12]}"
        if t.tables is not None:
            with t.in_store(doing):
                runs = t.tables.finished_runs_tagged(key, value, experiment_ids, result_metrics, KEY_RUNS_READ)
            return pick_with_result(runs, "benchmark_key")
        page = t.first_runs(experiment_ids, all_of(tag_eq(key, value), status_is("FINISHED")), KEY_RUNS_READ, doing)
        return pick_with_result(
            ((run.info.run_id, holds_result(run.data.metrics, result_metrics)) for run in page), "benchmark_key"
        )

    def study_has_legacy(self, experiment_ids: Sequence[str], study: str, epoch: int) -> bool:
        """Does the study have any FINISHED benchmark run without a ``benchmark_key`` tag? (cached)"""
        key = (tuple(experiment_ids), study)
        cached = self._legacy_studies.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] == epoch and now - cached[0] < LEGACY_TTL_S:
            return cached[2]
        t = self.tracker
        doing = f"looking for legacy benchmark runs of study {study[:12]}"
        condition = legacy_filter(t.tags, study)  # refuses an unsafe value before any store sees it, either way
        if t.tables is not None:  # one indexed query, ~10x cheaper than search_runs: the first model of a study pays it
            tagged = {t.tags.grouping.study_key_hash: study, t.tags.stage.key: t.tags.stage.benchmark}
            with t.in_store(doing):
                has = t.tables.any_run_without(tagged, t.tags.benchmark.key, experiment_ids)
        else:
            has = len(t.first_runs(experiment_ids, condition, 1, doing)) > 0
        self._legacy_studies[key] = (now, epoch, has)
        return has


def warn_fallback(found: ExistingBenchmark, champion: Champion) -> None:
    log.warning(
        "Benchmark run %s has no benchmark_key tag; it was matched to trial %s of study %s by "
        "trial_key_hash + study_key_hash (legacy fallback). Its config is unknown: re-run with "
        "run.mode=force_new to measure under the current benchmark_key.",
        found.run_id,
        champion.trial_key_hash,
        champion.study_key_hash,
    )


def warn_no_result(lookup: Lookup, identity: BenchmarkIdentity, result_metrics: Sequence[str]) -> None:
    """Name the FINISHED runs that matched a benchmark but hold no result, when nothing else answered."""
    if lookup.found is None and lookup.no_result:
        log.warning(
            "Benchmark run(s) %s are FINISHED for benchmark_key %s but hold none or not all of its result "
            "metrics (%s): done means a result, so they do not count and the benchmark is measured again.",
            ", ".join(lookup.no_result),
            identity.key[:16],
            ", ".join(result_metrics),
        )
