"""Change detectors on a model's per-record streams: correctness, and the true class's score.

Each stream is watched by River's ADWIN, fed one record at a time. River's detectors are plain
picklable objects, so the detector state travels inside the model's Bytewax snapshot and
survives a crash. ADWIN runs in River's Rust core: with its default ``clock`` of 32 (a change is
tested every 32 records) one update costs about 0.16 µs here, so a per-record Python loop stays
cheap next to the ~10 µs a record costs the job (see BENCHMARKS.md, "Drift detection").

ADWIN sees a change in either direction. A drop of the stream's mean is a *degradation* (an alert
fires); a rise is a *recovery* (an open alert resolves). The direction is read from the means of
the two parts ADWIN split the stream into: River resets the detector after a change, so what it
kept is the recent part and the rest, since its last reset, is the older part.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from river.drift import ADWIN

STATE_VERSION = 1
FAST_PATH = True  # feed River's Rust core directly (see StreamDetector._feed)
STREAMS = ("correctness", "true_class_score")


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Which detector watches the streams, and its sensitivity."""

    detector: str = "adwin"  # "adwin" or "off"
    delta: float = 0.002  # ADWIN's significance: lower is fewer false alarms, slower detection
    clock: int = 32  # ADWIN tests for a change every ``clock`` records
    scores: bool = True  # also watch the true class's score where the model sends score maps

    @property
    def enabled(self) -> bool:
        return self.detector != "off"

    def describe(self) -> dict[str, Any]:
        """The detector's identity and parameters, as alert documents carry them."""
        return {"name": self.detector, "delta": self.delta, "clock": self.clock}


@dataclass(frozen=True, slots=True)
class Change:
    """A change ADWIN found in one stream, at record ``index`` of the values just fed.

    ``before`` is the mean of the older part of the stream, ``after`` that of the recent part
    ADWIN kept; ``records`` is how many records the recent part holds.
    """

    stream: str
    index: int
    before: float
    after: float
    records: int

    @property
    def degraded(self) -> bool:
        return self.after < self.before


def new_adwin(config: DriftConfig) -> ADWIN:
    detector: ADWIN = ADWIN(delta=config.delta, clock=config.clock)  # type: ignore[no-untyped-call]
    return detector


def running_sum(total: float, values: NDArray[np.float64]) -> float:
    """``total`` plus ``values``, added one at a time from the left.

    numpy's ``sum`` adds pairwise, so its last bits depend on where a batch was cut; a
    left-to-right running sum (``cumsum`` is one) gives the same float whatever the batch
    sizes, which keeps an alert's ``baseline`` independent of batch boundaries.
    """
    if not len(values):
        return total
    return float(np.cumsum(np.concatenate(([total], values)))[-1])


class StreamDetector:
    """ADWIN on one stream, plus the running sum since its last reset (for the direction)."""

    __slots__ = ("adwin", "config", "count", "total")

    def __init__(
        self, config: DriftConfig, adwin: ADWIN | None = None, count: int = 0, total: float = 0.0
    ) -> None:
        self.config = config
        self.adwin = adwin if adwin is not None else new_adwin(config)
        self.count = count  # values fed since the detector last reset
        self.total = total  # and their sum

    def update(self, stream: str, values: NDArray[np.float64]) -> list[Change]:
        """Feed ``values`` in order; return every change found, in order.

        ADWIN tests for a change only when the count since its last reset reaches a multiple
        of ``clock``, so values go in blocks that end exactly there, through `map` (no Python
        loop per record), and the detector is asked once per block. tests/unit/test_drift.py
        checks this against a plain per-record loop.
        """
        changes: list[Change] = []
        adwin, clock = self.adwin, self.config.clock
        listed = values.tolist()
        n = len(listed)
        pos = start = 0  # next value to feed; first value not yet in ``count``/``total``
        fed = self.count  # values fed since the last reset
        while pos < n:
            end = min(n, pos + clock - fed % clock)
            detected = self._feed(listed[pos:end])
            fed += end - pos
            pos = end
            if detected:
                total = running_sum(self.total, values[start:end])
                kept, kept_total = int(adwin.width), float(adwin.total)
                older = fed - kept
                after = kept_total / kept if kept else total / fed
                before = (total - kept_total) / older if older else after
                changes.append(Change(stream, end - 1, before, after, kept))
                # River resets ADWIN on the next update: count afresh from here.
                self.count, self.total, start, fed = 0, 0.0, end, 0
        self.count = fed
        self.total = running_sum(self.total, values[start:])
        return changes

    def _feed(self, block: list[float]) -> bool:
        """Feed one block that ends where ADWIN tests; whether it found a change there.

        River's ``ADWIN.update`` is two lines around its Rust core (reset after a change, then
        ``_helper.update``); calling the core directly halves the cost per record (0.14 ->
        0.07 µs here). Where a River version lacks that core, the public method is used.
        """
        adwin = self.adwin
        helper = getattr(adwin, "_helper", None) if FAST_PATH else None
        if helper is None or not hasattr(adwin, "_drift_detected"):
            update: Callable[[float], None] = adwin.update
            deque(map(update, block), maxlen=0)
            return bool(adwin.drift_detected)
        if adwin._drift_detected:
            adwin._reset()  # type: ignore[no-untyped-call]
            helper = adwin._helper
        flags = list(map(helper.update, block))
        adwin._drift_detected = bool(flags[-1])
        return bool(adwin._drift_detected)

    def snapshot(self) -> dict[str, Any]:
        # Pickled bytes: an immutable copy of the live detector, as Bytewax snapshots must be.
        return {"adwin": pickle.dumps(self.adwin), "count": self.count, "total": self.total}

    @classmethod
    def restore(cls, config: DriftConfig, state: dict[str, Any]) -> StreamDetector:
        adwin = pickle.loads(state["adwin"])  # our own snapshot, never foreign input
        if (adwin.delta, adwin.clock) != (config.delta, config.clock):
            return cls(config)  # the sensitivity changed between runs: start afresh
        return cls(config, adwin, state["count"], state["total"])


class DriftWatch:
    """One model's detectors: correctness always, the true-class score once scores arrive."""

    def __init__(self, config: DriftConfig, resume: dict[str, Any] | None = None) -> None:
        self.config = config
        self.streams: dict[str, StreamDetector] = {}
        if resume is not None and resume.get("v") == STATE_VERSION:
            self.streams = {
                name: StreamDetector.restore(config, state)
                for name, state in resume["streams"].items()
            }

    def update(
        self, correct: NDArray[np.bool_], true_score: NDArray[np.float64] | None = None
    ) -> list[Change]:
        """Feed one batch of a model's records; changes come back ordered by record index.

        ``true_score`` holds, per record, the score the model gave the true class (NaN where
        the record carried a bare label); records without a score are skipped by that stream,
        and a change found there is reported at the record that revealed it.
        """
        if not self.config.enabled or len(correct) == 0:
            return []
        changes = self._stream("correctness").update("correctness", correct.astype(np.float64))
        if self.config.scores and true_score is not None:
            scored = np.flatnonzero(~np.isnan(true_score))
            if len(scored):
                found = self._stream("true_class_score").update(
                    "true_class_score", true_score[scored]
                )
                changes += [
                    Change(c.stream, int(scored[c.index]), c.before, c.after, c.records)
                    for c in found
                ]
                changes.sort(key=lambda c: c.index)
        return changes

    def _stream(self, name: str) -> StreamDetector:
        detector = self.streams.get(name)
        if detector is None:
            detector = self.streams[name] = StreamDetector(self.config)
        return detector

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "streams": {name: d.snapshot() for name, d in self.streams.items()},
        }


def true_class_scores(
    labels: Sequence[str],
    truth: NDArray[Any],
    keys: Sequence[str],
    scores: NDArray[np.float64] | None,
) -> NDArray[np.float64] | None:
    """Per record, the score its model gave the true label; NaN for records without scores.

    ``truth`` holds codes into ``labels``; ``scores`` is ``(records, keys)`` with NaN where a
    record's map lacks a key, and a row of NaN where the record sent a bare label. A scored
    record whose map lacks its true label gave that label 0.
    """
    if scores is None or not len(keys) or len(truth) == 0:
        return None
    index = {label: code for code, label in enumerate(labels)}
    column = np.full(len(labels), -1, dtype=np.int64)
    for j, key in enumerate(keys):
        if key in index:
            column[index[key]] = j
    col = column[np.asarray(truth, dtype=np.int64)]
    picked = scores[np.arange(len(truth)), np.maximum(col, 0)]
    picked = np.where((col < 0) | np.isnan(picked), 0.0, picked)
    picked[np.isnan(scores).all(axis=1)] = np.nan
    return picked
