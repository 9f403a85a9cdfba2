"""One root exception, narrow subclasses: callers catch what they can act on."""


class ConfusionError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(ConfusionError):
    """A setting is missing or invalid: fix the named environment variable and restart."""


class SnapshotError(ConfusionError):
    """A checkpoint cannot be read by this version: reset the recovery directory or downgrade."""


class SinkError(ConfusionError):
    """A sink cannot deliver and retrying will not help (e.g. rejected credentials)."""
