"""A worker process from its fork to "ready": runtimes warmed, connections opened, presence announced.

Runs in each pool process before it says it is up (Celery waits ``worker_proc_alive_timeout`` for that), so
a request never meets a cold runtime. The store is opened read-only and only once it exists and is complete
(podium never creates or migrates it): until then a thread waits for it, and a first request waits on the
same lock.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import socket
import threading
import time
from typing import Any

from celery import Celery

from podium.coordination.connection import connect
from podium.coordination.workers import WorkerPresence
from podium.errors import StoreNotReady
from podium.settings.env import PodiumSettings, redact_url, worker_name
from podium.settings.files import load_benchmark_config
from podium.workers.tasks import worker_deps
from podium.workers.warmup import warm_runtimes

log = logging.getLogger(__name__)

#: How often a worker looks again for a store that does not exist yet.
STORE_POLL_S = 1.0


class ProcessStart:
    def __init__(self, app: Celery, settings: PodiumSettings):
        self.app = app
        self.settings = settings

    def run(self, **_: Any) -> None:
        """The ``worker_process_init`` handler: warm, connect (or wait for the store on a thread), announce."""
        settings = self.settings
        cfg = load_benchmark_config(None, settings.config_dir).benchmarking
        warmed = warm_runtimes(settings.triton_url, cfg.protocol)
        if not self.connect_now():
            threading.Thread(target=self.wait_for_store, name="podium-store", daemon=True).start()
        name = settings.worker_name or worker_name()
        store = redact_url(settings.tracking_uri)
        log.info("podium worker %s ready: warmed %s; MLflow store %s", name, warmed.line(), store)
        fields = {"host": socket.gethostname(), "pid": str(os.getpid()), "warmed": warmed.line(), "store": store}
        presence = WorkerPresence(connect(settings.redis_url), name, fields)
        presence.start()
        atexit.register(presence.stop)
        # what warming built stays: one collection now, then the collector never walks it again (the first full
        # collection of a forked process with torch loaded took ~0.2 s of the first benchmark)
        gc.collect()
        gc.freeze()

    def connect_now(self) -> bool:
        """Redis, the result backend and the store opened, the benchmark experiment looked up (never created).
        False while the store is not ready; other failures are left to the first task's retries."""
        try:
            deps = worker_deps(self.app)
            deps.redis.ping()  # redis-py connects on the first command: open the sockets now
            self.app.backend.client.ping()
            deps.tracking.warm_worker_reads()
        except StoreNotReady:
            return False
        except Exception as exc:
            log.warning("Could not prepare this worker's connections at start (%s); the first task retries.", exc)
        return True

    def wait_for_store(self) -> None:
        """The store does not exist yet (training creates it): one line, then look every second."""
        try:
            worker_deps(self.app)
        except StoreNotReady as exc:
            log.warning("%s; the first request waits for it too.", exc)
        while not self.connect_now():
            time.sleep(STORE_POLL_S)
