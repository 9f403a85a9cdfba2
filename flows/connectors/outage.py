"""What the person on call reads when a dependency goes away: once, while blocked, and when back.

A connector reports what it sees (`Outage.down` with a reason, `Outage.up`) from as many places
as it likes (each Kafka partition, the bulk thread, a watchdog); the tracker turns that into three
kinds of log line and no more:

- ``<dependency> unreachable: <reason>``, once, when the first reporter goes down;
- every `REPORT_EVERY_S` while any reporter is down, ``<dependency> still unreachable after Ns;
  <how far behind>`` (the connector says what "behind" means: documents waiting, records not
  read, last known lag);
- ``<dependency> reachable again after Ns``, once, when every reporter is back up.

A watchdog thread runs only while something is down, or while a connector has work in flight
that it asked to be watched (`Outage.stalled_after`), so a frozen server that never answers
(SIGSTOP, a black-holed route) is named within `STALL_S` seconds, not after a 30 s timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import Gauge

from flows.telemetry import job_logger

STALL_S = 5.0  # no answer for this long: the dependency counts as unreachable
REPORT_EVERY_S = 10.0  # while unreachable, one "still unreachable" line this often
TICK_S = 0.5

UNREACHABLE = Gauge(
    "confusion_dependency_unreachable",
    "1 while the job cannot reach a dependency (Elasticsearch, Kafka)",
    ["dependency"],
)

log = job_logger("health")

_REGISTRY: dict[str, Outage] = {}
_REGISTRY_LOCK = threading.Lock()


def outage(name: str, behind: Callable[[], str] | None = None) -> Outage:
    """The process's tracker for ``name`` (one per dependency, shared by its reporters)."""
    with _REGISTRY_LOCK:
        tracker = _REGISTRY.get(name)
        if tracker is None:
            tracker = _REGISTRY[name] = Outage(name)
        if behind is not None:
            tracker.behind = behind
        return tracker


class Outage:
    """Reachability of one dependency as seen by its reporters; logs transitions once."""

    def __init__(self, name: str, behind: Callable[[], str] | None = None) -> None:
        self.name = name
        self.behind = behind or (lambda: "")
        self._down: dict[str, str] = {}  # reporter -> reason
        self._busy: dict[str, tuple[float, str]] = {}  # reporter -> (since, what)
        self._since = 0.0  # when the current outage began
        self._last_report = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.outages = 0  # finished or current outages (for tests and drills)
        self.longest = 0.0

    @property
    def is_down(self) -> bool:
        return bool(self._down)

    def down(self, reporter: str, reason: str) -> None:
        with self._lock:
            first = not self._down
            if reporter in self._down and not first:
                self._down[reporter] = reason
                return
            self._down[reporter] = reason
            if first:
                self._since = self._last_report = time.monotonic()
                self.outages += 1
                UNREACHABLE.labels(dependency=self.name).set(1)
                log.warning("%s unreachable: %s", self.name, reason)
            self._ensure_watchdog()

    def up(self, reporter: str) -> None:
        if reporter not in self._down:  # the hot path: nothing to do
            return
        with self._lock:
            self._down.pop(reporter, None)
            if self._down:
                return
            took = time.monotonic() - self._since
            self.longest = max(self.longest, took)
            UNREACHABLE.labels(dependency=self.name).set(0)
            log.warning("%s reachable again after %.1fs", self.name, took)

    def forget(self, reporter: str) -> None:
        """``reporter`` is gone (a closed partition): it no longer holds an outage open."""
        with self._lock:
            self._busy.pop(reporter, None)
            if self._down.pop(reporter, None) is not None and not self._down:
                UNREACHABLE.labels(dependency=self.name).set(0)

    def busy(self, reporter: str, what: str) -> None:
        """``reporter`` waits for an answer now: if none comes within `STALL_S`, it is down."""
        with self._lock:
            self._busy[reporter] = (time.monotonic(), what)
            self._ensure_watchdog()

    def idle(self, reporter: str) -> None:
        """The answer came (or the wait ended): clears `busy`, not `down`."""
        with self._lock:
            self._busy.pop(reporter, None)

    def _ensure_watchdog(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._watch, name=f"outage-{self.name}", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(TICK_S)
            now = time.monotonic()
            stalled: list[tuple[str, str]] = []
            with self._lock:
                if not self._down and not self._busy:
                    self._thread = None
                    return
                for reporter, (since, what) in self._busy.items():
                    if now - since >= STALL_S and reporter not in self._down:
                        stalled.append((reporter, f"no answer for {now - since:.0f}s to {what}"))
                report = bool(self._down) and now - self._last_report >= REPORT_EVERY_S
                if report:
                    self._last_report = now
                    took = now - self._since
            for reporter, reason in stalled:
                self.down(reporter, reason)
            if report:
                try:
                    behind = self.behind()
                except Exception as exc:  # a report must never kill the watchdog
                    behind = f"(behind unknown: {exc})"
                log.warning(
                    "%s still unreachable after %.0fs%s",
                    self.name,
                    took,
                    f"; {behind}" * bool(behind),
                )


def source_lag() -> int | None:
    """The Kafka source's lag summed over this process's partitions, as last reported
    (``bytewax_kafka_consumer_lag``); None without a Kafka source."""
    from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE

    total, seen = 0, False
    for metric in BYTEWAX_CONSUMER_LAG_GAUGE.collect():
        for sample in metric.samples:
            total += int(sample.value)
            seen = True
    return total if seen else None
