"""Every Redis key, stream, channel and queue name podium uses, under one prefix."""

from __future__ import annotations

from podium.core.safety import require_safe

PREFIX = "podium"

#: Result events (worker -> aggregator).
BENCHMARKS_STREAM = f"{PREFIX}:benchmarks"
#: Durable history of best-model updates.
BEST_UPDATES_STREAM = f"{PREFIX}:best-updates"
#: Requests and events that could not be processed, with the error.
DEAD_LETTERS_STREAM = f"{PREFIX}:dead-letters"
#: The aggregator's consumer group on BENCHMARKS_STREAM.
AGGREGATOR_GROUP = f"{PREFIX}-aggregator"
#: Only one aggregator applies events at a time (the leader): its lock and its fencing counter.
AGGREGATOR_LEADER = f"{PREFIX}:aggregator:leader"
AGGREGATOR_FENCE = f"{PREFIX}:aggregator:fence"
#: Benchmark requests training hooks could not send (a counter; ``podium backfill`` sends them).
HOOK_MISSED = f"{PREFIX}:hooks:missed"
#: Bumped whenever legacy benchmark runs (without ``benchmark_key``) may have appeared (``podium backfill``,
#: ``podium sweep``): workers then ask MLflow again whether a study has any.
LEGACY_EPOCH = f"{PREFIX}:legacy-epoch"
#: Requests producers sent (task id, key, queue, the request), capped: ``podium backfill --sent`` re-sends those
#: the queue lost. Lives in the same Redis as the queue: a FLUSHALL takes it too.
SENT_STREAM = f"{PREFIX}:sent"
#: Celery's result of a task (the answer: measured, reused, failed), kept ``result_expires`` (24 h).
TASK_META_PREFIX = "celery-task-meta-"
#: Celery task name of a benchmark request.
BENCHMARK_TASK = f"{PREFIX}.benchmark"
#: Celery task name of one serving config of a spread ``podium tune``.
TUNE_TASK = f"{PREFIX}.tune_config"


def lock(benchmark_key: str) -> str:
    return f"{PREFIX}:lock:{require_safe(benchmark_key, 'benchmark_key')}"


def fence(benchmark_key: str) -> str:
    return f"{PREFIX}:fence:{require_safe(benchmark_key, 'benchmark_key')}"


def tune_server_lock(server: str) -> str:
    """Whose turn it is to tune on a Triton server (``host:port``): one config's load at a time."""
    return f"{PREFIX}:tune-lock:{require_safe(server, 'server')}"


def tune_server_fence(server: str) -> str:
    return f"{PREFIX}:tune-fence:{require_safe(server, 'server')}"


def tune_stopped(search_id: str, config_label: str) -> str:
    """Set when a search stopped waiting for one of its configs: a worker that takes it later drops it."""
    return f"{PREFIX}:tune-stopped:{require_safe(search_id, 'search_id')}:{require_safe(config_label, 'config')}"


def done(benchmark_key: str) -> str:
    return f"{PREFIX}:done:{require_safe(benchmark_key, 'benchmark_key')}"


def heartbeat(benchmark_key: str) -> str:
    return f"{PREFIX}:heartbeat:{require_safe(benchmark_key, 'benchmark_key')}"


def cores(host: str) -> str:
    """The core claims of one host's workers (a hash: core id -> claim, ``usable`` -> the host's cores)."""
    return f"{PREFIX}:cores:{require_safe(host, 'host')}"


CORES_PATTERN = f"{PREFIX}:cores:*"


def intake_stopped(who: str) -> str:
    """Set (with a TTL, refreshed) while a worker or the aggregator has stopped taking work: Redis evicts."""
    return f"{PREFIX}:intake-stopped:{require_safe(who, 'process name')}"


INTAKE_STOPPED_PATTERN = f"{PREFIX}:intake-stopped:*"


def attempts(request_id: str) -> str:
    return f"{PREFIX}:attempts:{require_safe(request_id, 'request_id')}"


def best_latest(study_key_hash: str, config_hash: str | None) -> str:
    """Latest-value key for late joiners: one per (study, config)."""
    return f"{PREFIX}:best:{require_safe(study_key_hash, 'study_key_hash')}:{config_hash or 'legacy'}"


def best_channel(study_key_hash: str) -> str:
    """Live Pub/Sub channel of a study's best-model updates."""
    return f"{PREFIX}:best:{require_safe(study_key_hash, 'study_key_hash')}"


def worker(name: str) -> str:
    """A worker process's ready heartbeat (what it warmed, its store): expires when the worker dies."""
    return f"{PREFIX}:worker:{require_safe(name, 'worker name')}"


WORKER_PATTERN = f"{PREFIX}:worker:*"
BEST_CHANNEL_PATTERN = f"{PREFIX}:best:*"
LOCK_PATTERN = f"{PREFIX}:lock:*"
HEARTBEAT_PATTERN = f"{PREFIX}:heartbeat:*"
BEST_LATEST_PATTERN = f"{PREFIX}:best:*:*"


def study_of_best(key: str) -> str:
    """The study hash inside a latest-value key ``podium:best:{study}:{config}``."""
    return key.split(":")[2]


def sequence(study_key_hash: str) -> str:
    return f"{PREFIX}:seq:{require_safe(study_key_hash, 'study_key_hash')}"


SEQUENCE_PATTERN = f"{PREFIX}:seq:*"


def selection_config(study_key_hash: str) -> str:
    """The hash of the selection config a study's channel is published under (written with each publish)."""
    return f"{PREFIX}:selection-config:{require_safe(study_key_hash, 'study_key_hash')}"


#: Kombu's binding key of each podium queue (how ``podium status`` finds the queues).
QUEUE_BINDING_PREFIX = "_kombu.binding."
QUEUE_BINDING_PATTERN = f"{QUEUE_BINDING_PREFIX}{PREFIX}.*"


def queue(target: str) -> str:
    """One Celery queue per target: ``podium.cpu``, ``podium.gpu-h200``."""
    return f"{PREFIX}.{require_safe(target, 'target')}"


#: Messages a worker's main process holds unacknowledged: delivery tag -> who holds it (JSON), for the reaper.
INFLIGHT = f"{PREFIX}:inflight"
#: Kombu's Redis transport: unacknowledged messages (delivery tag -> message) and their delivery times.
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
#: Runs a worker's main process could not end itself (benchmark_key -> worker, reason): ended by the next task.
ENDINGS = f"{PREFIX}:endings"


def node(name: str) -> str:
    """A worker main process's liveness key (renewed while it lives): the reaper requeues what a dead one held."""
    return f"{PREFIX}:node:{require_safe(name, 'worker node')}"


def hold(task_id: str) -> str:
    """What the task ``task_id`` holds while it runs (its request, attempt, lock token): read by its main process
    when the task ends outside podium's handling (hard time limit, lost process, shutdown)."""
    return f"{PREFIX}:hold:{require_safe(task_id, 'task id')}"


def outage(request_id: str) -> str:
    """When a request first met an outage of the store (or a full disk), and how often it has waited since."""
    return f"{PREFIX}:outage:{require_safe(request_id, 'request_id')}"
