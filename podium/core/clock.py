"""Time, passed in: a part that waits, throttles or backs off takes a ``Clock`` (tests pass one they move by
hand, e.g. ``tests.doubles.ManualClock``), and reads no clock of its own.

The timing loop's high-resolution ``Timer`` (integer nanoseconds) is the other reader of time: it times
requests, it does not schedule anything.
"""

from __future__ import annotations

from collections.abc import Callable

#: Seconds of a monotonic clock, as ``time.monotonic`` gives them (the default everywhere).
Clock = Callable[[], float]
#: Nanoseconds of a monotonic high-resolution clock, as ``time.perf_counter_ns`` gives them.
Timer = Callable[[], int]
