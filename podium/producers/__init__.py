"""Producers: enqueue benchmark requests from training code, the CLI or a backfill."""

from podium.producers.enqueue import Enqueued, build_request, enqueue_benchmark
from podium.producers.hooks import BenchmarkHook

__all__ = ["BenchmarkHook", "Enqueued", "build_request", "enqueue_benchmark"]
