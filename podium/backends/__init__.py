"""Inference backends behind one narrow port (:class:`podium.backends.base.InferenceBackend`)."""
