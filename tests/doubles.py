"""Test doubles made by subclassing production classes (production code carries no test seams)."""

from __future__ import annotations


class ManualClock:
    """A ``podium.core.clock.Clock`` that moves only when the test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
