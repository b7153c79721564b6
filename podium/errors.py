"""One error tree: every error podium raises on purpose derives from ``PodiumError``."""


class PodiumError(Exception):
    """Base class of every error podium raises on purpose; catch it to catch all of podium's."""


class ConfigError(PodiumError):
    """A configuration file or setting is missing, malformed or holds a value podium cannot use."""


class UnsafeValueError(PodiumError, ValueError):
    """A value that would go into an MLflow filter string or a Redis key is not of the allowed form."""


class TrackingError(PodiumError):
    """The MLflow tracking store could not be read or written."""


class NothingToSelectError(PodiumError):
    """The store holds no benchmark run that can be joined with a trial run."""


class PrefixError(PodiumError, ValueError):
    """A short hash matched no hash, or more than one."""
