"""podium: honest inference-latency benchmarks and an outlier-proof best model per study."""

__version__ = "0.1.0"
