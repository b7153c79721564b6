"""MLflow: the tracking adapter that reads and writes benchmark, trial and refit runs."""
