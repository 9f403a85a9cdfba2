"""The job's log lines: timestamped, as text or JSON, on stderr.

Every line the job logs goes through the ``confusion`` logger, librdkafka's own lines included
(they are handed to ``confusion.librdkafka`` through confluent-kafka's ``logger`` setting), so an
operator reads one stream with one clock. ``CONFUSION_LOG_FORMAT=json`` makes each line one JSON
object for clusters that ship logs; a bad value is refused at start by `flows.settings`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from typing import Any

import orjson

LOG_FORMAT_ENV = "CONFUSION_LOG_FORMAT"
LOG_FORMATS = ("text", "json")
ROOT = "confusion"


def utc_stamp(created: float) -> str:
    """RFC 3339 in UTC with milliseconds, as the documents' times."""
    seconds, millis = divmod(int(created * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-12-02T09:00:00.123Z WARNING confusion-stream: confusion.kafka: message``."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{utc_stamp(record.created)} {record.levelname} "
            f"confusion-stream: {record.name}: {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` (and ``error``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": utc_stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else TextFormatter()


def _configured_format() -> str:
    kind = os.environ.get(LOG_FORMAT_ENV, "text").strip().lower() or "text"
    return kind if kind in LOG_FORMATS else "text"  # a bad value: the settings refuse to start


def job_logger(name: str) -> logging.Logger:
    """A logger under ``confusion`` that prints to stderr even when nobody configured logging."""
    root = logging.getLogger(ROOT)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter(_configured_format()))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return root.getChild(name)


def set_format(kind: str) -> None:
    """Switch every handler of the job's logger to ``kind`` (``text`` or ``json``)."""
    job_logger("logs")
    for handler in logging.getLogger(ROOT).handlers:
        handler.setFormatter(formatter(kind))


LIBRDKAFKA_LOGGER = "librdkafka"
REPEAT_EVERY_S = 10.0
_NUMBERS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Lets a line through at most once per `REPEAT_EVERY_S` per shape (its text with the
    numbers blanked out), then says how many were held back: a down broker makes librdkafka
    retry a connection ten times a second, and each failure is a log line."""

    def __init__(self, every: float = REPEAT_EVERY_S) -> None:
        super().__init__()
        self.every = every
        self._seen: dict[str, tuple[float, int]] = {}  # shape -> (last let through, held back)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        shape = _NUMBERS.sub("#", record.getMessage())
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(shape, (-self.every, 0))
            if now - last < self.every:
                self._seen[shape] = (last, held + 1)
                return False
            self._seen[shape] = (now, 0)
            if len(self._seen) > 1000:  # shapes of long ago: forget them
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.every}
        if held:
            record.msg = f"{record.getMessage()} ({held} like it in the last {now - last:.0f}s)"
            record.args = None
        return True


def librdkafka_logger() -> logging.Logger:
    """The logger handed to every confluent-kafka client (``logger`` config): its lines carry
    the job's timestamp and format, repeated ones are held back (`RepeatFilter`)."""
    logger = job_logger(LIBRDKAFKA_LOGGER)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger
