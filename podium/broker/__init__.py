"""The Celery app on the Redis broker, shared by producers and workers."""
