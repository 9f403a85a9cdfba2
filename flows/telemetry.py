"""Counters, the live progress line and the liveness heartbeat.

Counters live in prometheus_client's default registry, which Bytewax's dataflow API serves at
``/metrics`` when ``BYTEWAX_DATAFLOW_API_ENABLED=1``. The progress line goes to stderr: redrawn in
place twice a second on a terminal, one plain line every ten seconds otherwise (logs, pods).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from prometheus_client import Counter, start_http_server

from flows.logs import job_logger as job_logger
from flows.parsing.batches import ParsedBatch

RECORDS = Counter("confusion_records", "Records counted (valid records)")
REJECTED_RECORDS = Counter("confusion_rejected_records", "Records refused and dead-lettered")
REJECTED_ENTRIES = Counter(
    "confusion_rejected_entries", "Model entries refused in otherwise valid records"
)
DOCUMENTS = Counter("confusion_documents", "Window documents emitted")


@dataclass(slots=True)
class Totals:
    """Counts of a run: what the progress line and the summary's first line say."""

    records: int = 0
    rejected_records: int = 0
    rejected_entries: int = 0
    documents: int = 0

    def line(self, rate: float) -> str:
        return (
            f"confusion-stream: {self.records:,} records  {rate:,.0f} rec/s  "
            f"rejected {self.rejected_records:,} records + {self.rejected_entries:,} "
            f"entries  {self.documents:,} documents"
        )


class Progress:
    """Totals of this process and the progress line they feed."""

    def __init__(self, mode: str = "auto", stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        tty = stream.isatty()
        self.enabled = mode == "on" or (mode == "auto" and tty)
        self.logging = mode == "auto" and not tty  # periodic plain lines
        self.interval = 0.5 if self.enabled else 10.0
        self.records = self.rejected_records = self.rejected_entries = self.documents = 0
        self._started = time.monotonic()
        self._last_print = self._started
        self._last_records = 0
        self._lock = threading.Lock()
        self._drawn = False

    def parsed(self, batch: ParsedBatch) -> None:
        RECORDS.inc(batch.records)
        if batch.rejected_records:
            REJECTED_RECORDS.inc(batch.rejected_records)
        if batch.rejected_entries:
            REJECTED_ENTRIES.inc(batch.rejected_entries)
        with self._lock:
            self.records += batch.records
            self.rejected_records += batch.rejected_records
            self.rejected_entries += batch.rejected_entries
        self._maybe_print()

    def refused_entries(self, n: int) -> None:
        """Entries refused after parsing (CONFUSION_MAX_CLASSES, in the window step)."""
        REJECTED_ENTRIES.inc(n)
        with self._lock:
            self.rejected_entries += n

    def emitted(self, n: int = 1) -> None:
        DOCUMENTS.inc(n)
        with self._lock:
            self.documents += n

    def line(self, rate: float) -> str:
        return Totals(
            self.records, self.rejected_records, self.rejected_entries, self.documents
        ).line(rate)

    def _maybe_print(self) -> None:
        if not (self.enabled or self.logging):
            return
        now = time.monotonic()
        if now - self._last_print < self.interval:
            return
        with self._lock:
            rate = (self.records - self._last_records) / (now - self._last_print)
            self._last_print, self._last_records = now, self.records
            if self.enabled:
                self.stream.write("\r" + self.line(rate) + "\033[K")
                self._drawn = True
                self.stream.flush()
            else:  # a log line like any other: timestamped, text or JSON
                job_logger("progress").info(self.line(rate).removeprefix("confusion-stream: "))

    def finish(self) -> float:
        """Clear the progress line (the summary takes its place); return seconds since start."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\033[K")
                self._drawn = False
        return time.monotonic() - self._started


class Heartbeat:
    """Touches a file while the dataflow loop runs, for a liveness probe to check its age.

    Sources call `beat` on every poll, including empty polls of an idle topic, so a quiet stream
    is not mistaken for a stuck job; a stuck dataflow stops polling and the file goes stale.
    """

    def __init__(self, path: Path | None, every: float = 1.0) -> None:
        self.path = path
        self.every = every
        self._next = 0.0

    def beat(self) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        try:
            self.path.touch()
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()


def heartbeat_from_env() -> Heartbeat:
    path = os.environ.get("CONFUSION_HEARTBEAT_FILE")
    return Heartbeat(Path(path) if path else None)


def serve_metrics(port: int | None, addr: str) -> None:
    """Serve the default registry at ``http://addr:port/metrics`` from a daemon thread."""
    if port is None:
        return
    start_http_server(port, addr)
    job_logger("metrics").info("Prometheus metrics on http://%s:%d/metrics", addr, port)
