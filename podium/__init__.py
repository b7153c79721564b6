"""podium: honest inference-latency benchmarks and an outlier-proof best model per study."""

__version__ = "0.1.0"


def subscribe(*args, **kwargs):
    """Follow best-model updates; see :func:`podium.coordination.subscriber.subscribe`."""
    from podium.coordination.subscriber import subscribe as _subscribe

    return _subscribe(*args, **kwargs)
