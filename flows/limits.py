"""Resource limits a user sets, and the one log line a job writes when it first meets each.

A record beyond a limit is refused like any malformed record (a dead letter whose reason names the
limit and its variable); the limits exist so that one hostile record, or one model with endless
labels, cannot take the job's memory. The log line is written once per limit and process, so a
stream of oversized records does not flood the log.
"""

from __future__ import annotations

from dataclasses import dataclass

# Defaults: a Kafka message's default maximum size, far more models than any record sends, and
# the classes of ImageNet (a 1,000 x 1,000 matrix is 8 MB per model).
MAX_RECORD_BYTES = 1_048_576
MAX_MODELS = 100
MAX_CLASSES = 1000

_warned: set[str] = set()


@dataclass(frozen=True, slots=True)
class Limits:
    """``record_bytes``: longest message; ``models``: entries per record; ``classes``: labels a
    model's window may hold (truth and predictions together, ever seen)."""

    record_bytes: int = MAX_RECORD_BYTES
    models: int = MAX_MODELS
    classes: int = MAX_CLASSES


def reached(variable: str, reason: str) -> str:
    """Log the first time ``variable``'s limit refuses something; return the reason unchanged."""
    if variable not in _warned:
        from flows.telemetry import job_logger  # telemetry imports the parser: import late

        _warned.add(variable)
        job_logger("limits").warning(
            "%s reached: %s (later refusals go to the dead letters without this line; "
            "raise %s to accept such records)",
            variable,
            reason,
            variable,
        )
    return reason
