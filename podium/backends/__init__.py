"""Inference backends behind one narrow port (:class:`podium.backends.base.InferenceBackend`), one module each,
registered once in :mod:`podium.core.backend_registry` and built by :func:`podium.backends.factory.make_backend`."""
