"""An MLServer runtime with a known service time: it stays busy ``sleep_ms`` and returns zeros shaped like
per-token logits. Runs inside MLServer's own venv (not podium's)."""

import time

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class SleepModel(MLModel):
    async def load(self) -> bool:
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        self.sleep_s = float(extra.get("sleep_ms", 0)) / 1000.0
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        if self.sleep_s:
            # A precise, fixed service time: time.sleep overshoots by ~0.2 ms and lets the event loop
            # add its own delay; a spin to a deadline is busy like a model on a device would be.
            deadline = time.perf_counter() + self.sleep_s
            while time.perf_counter() < deadline:
                pass
        out = np.zeros((x.shape[0], x.shape[1] if x.ndim > 1 else 1, 5), dtype=np.float32)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("logits", out)])
