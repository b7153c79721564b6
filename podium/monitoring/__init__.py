"""Operational metrics (Prometheus) of workers and the aggregator."""
