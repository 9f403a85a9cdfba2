"""The one retry policy of the connectors: capped exponential backoff with jitter, forever.

Sinks retry a transient failure for as long as it takes: the dataflow blocks meanwhile, which is
the backpressure we want, and nothing a checkpoint covers is dropped. The clients retry what they
can on their own (librdkafka: see `flows.connectors.kafka.config.RETRY_DEFAULTS`); this loop is
kept only where they cannot do the job, and each use says why in a comment.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 30.0


class Backoff:
    """Delays doubling from ``first`` up to ``cap``, each shortened by up to 20 % (jitter, so
    partitions that failed together do not retry in step); one instance per thing retried."""

    def __init__(self, cap: float = MAX_DELAY_S, first: float = FIRST_DELAY_S) -> None:
        self.cap, self.delay, self.attempt = cap, first, 0

    def next_delay(self) -> float:
        """The pause before the next attempt (counts the attempt, does not sleep)."""
        self.attempt += 1
        pause = min(self.cap, self.delay) * random.uniform(0.8, 1.0)
        self.delay = min(self.cap, self.delay * 2)
        return pause


class Transient(Exception):
    """Raised by a retried call for a failure it reports by value (e.g. bulk items refused for
    now inside a successful response), so one loop handles both kinds."""


def retry_forever(
    call: Callable[[], T],
    transient: Callable[[Exception], str | None],
    on_retry: Callable[[Exception, str, int, float], None],
    backoff: Backoff,
) -> T:
    """Run ``call`` until it returns; any failure ``transient`` finds no reason for is raised.

    Before each retry ``on_retry(exc, reason, attempt, pause)`` logs and counts it (``attempt``
    starts at 1), then the loop sleeps ``pause`` seconds.
    """
    while True:
        try:
            return call()
        except Exception as exc:
            reason = transient(exc)
            if reason is None:
                raise
            pause = backoff.next_delay()
            on_retry(exc, reason, backoff.attempt, pause)
            time.sleep(pause)
