"""Measuring a model: the timing loop, a model measured on a backend, the benchmark run's lifecycle, model artifacts."""
