"""One error tree: every error podium raises on purpose derives from ``PodiumError``."""


class PodiumError(Exception):
    """Base class of every error podium raises on purpose; catch it to catch all of podium's."""


class ConfigError(PodiumError):
    """A configuration file or setting is missing, malformed or holds a value podium cannot use."""


class UnsafeValueError(PodiumError, ValueError):
    """A value that would go into an MLflow filter string or a Redis key is not of the allowed form."""


class TrackingError(PodiumError):
    """The MLflow tracking store could not be read or written."""


class StoreUnavailable(TrackingError):
    """The store exists (or may) but cannot be opened right now: locked, or an I/O error."""


class TransactionSplit(TrackingError):
    """A store call inside one joined transaction rolled it back and went on (MLflow's own retries do): nothing
    of the transaction was written, and the caller may make the calls again one by one."""


class StoreNotReady(StoreUnavailable):
    """The store does not exist yet, or is being created or migrated by someone else: podium waits for it and
    never creates it (only ``podium demo``, which owns its store, does)."""


class NothingToSelectError(PodiumError):
    """The store holds no benchmark run that can be joined with a trial run."""


class PrefixError(PodiumError, ValueError):
    """A short hash matched no hash, or more than one."""


class MessageError(PodiumError, ValueError):
    """A message is malformed, of an unknown schema version, or too large."""


class RunRefused(PodiumError):
    """A run cannot be benchmarked as it is (no model, no objective metric, not FINISHED, unknown): the run's
    problem, never the service's. The message is one line naming what is missing and what fixes it."""


class LockError(PodiumError):
    """A fenced lock could not be taken or was lost."""


class LockBusy(LockError):
    """Another holder has the lock right now."""


class LockLost(LockError):
    """The lock expired or was taken over; the work must not be committed."""


class CoresBusy(LockBusy):
    """The cores a measurement needs are claimed by other workers of this host: retry later."""


class LeadershipLost(LockLost):
    """This aggregator is no longer the leader: what it holds must be dropped and rebuilt."""


class ChannelRefused(PodiumError):
    """Another selection config owns the study's channel (and this publish does not take it over)."""

    def __init__(self, study: str, channel_hash: str):
        super().__init__(f"study {study[:12]}'s channel belongs to selection config {channel_hash[:12]}")
        self.study = study
        self.channel_hash = channel_hash


class BrokerUnavailable(PodiumError):
    """The request could not be handed to the broker; it was not sent."""


class BackendError(PodiumError):
    """The model could not be loaded, filled, served or reached."""


class ModelNotFoundError(PodiumError):
    """The model artifact to benchmark could not be found or downloaded."""


class ConversionError(PodiumError):
    """An MLflow model could not be loaded or made into a file the backend measures."""


class DemoError(PodiumError):
    """The demo could not run to the end (a process died, or results did not arrive in time)."""


class TuningError(PodiumError):
    """A serving-config search was asked for something it cannot do, or found no config meeting the budget."""


class RetryLater(Exception):
    """Run this request again after ``countdown`` seconds: a signal to the task (like dramatiq's ``Retry``), not an
    error, so it stays outside the ``PodiumError`` tree and no ``except PodiumError`` swallows it."""

    def __init__(self, countdown: float, why: str):
        super().__init__(why)
        self.countdown = countdown


class UnknownStudy(PodiumError):
    """No published update and no benchmark run names this study (the board answers 404)."""
