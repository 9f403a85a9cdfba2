"""Sliding event-time windows: the records of the last ``duration`` of event time, per model.

The window ends at the newest event time seen so far and reaches back ``duration`` from there
(``newest - duration < ts``). Records leave in read order: the oldest read record goes first once
its time falls out. A record that arrives late (its time already outside the window) is counted
in ``seq`` but leaves again at once, so it never inflates the matrix; one read late but still
inside the window stays until the records read before it have left.

Storage follows `CountWindow`: one pair code per record, plus its event time, in a ring that
doubles when full, so memory follows the records the duration holds and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from flows.windows.base import SlidingWindow, WindowKind, WindowPolicy, WindowSnapshot, WindowView
from flows.windows.pairs import Codes
from flows.windows.record_log import RecordLog


class TimeSnapshot(WindowSnapshot):
    duration_ms: int
    newest: int | None
    first_ts: int | None
    ts: NDArray[np.int64]  # event time of each held record
    num: NDArray[np.int64]  # record number of each held record


class TimeWindow(SlidingWindow):
    """The records of one model within ``duration_ms`` of the newest event time."""

    kind = WindowKind.TIME

    __slots__ = ("_head", "_num", "_ts", "duration_ms", "first_ts", "newest")

    def __init__(self, duration_ms: int, score_bins: int = 0) -> None:
        if duration_ms < 1:
            raise ValueError("window duration must be >= 1 ms")
        super().__init__(64, RecordLog(1024, compress=False), score_bins)
        self.duration_ms = duration_ms
        self.newest: int | None = None  # the window ends here (the newest event time)
        self.first_ts: int | None = None  # event time of the first record ever (for "full")
        self._ts: NDArray[np.int64] = np.zeros(64, dtype=np.int64)
        self._num: NDArray[np.int64] = np.zeros(64, dtype=np.int64)  # record number per slot
        self._head = 0  # ring slot of the oldest held record

    @property
    def full(self) -> bool:
        """Whether the stream has covered one whole duration yet."""
        return (
            self.newest is not None
            and self.first_ts is not None
            and self.newest - self.first_ts >= self.duration_ms
        )

    def _grow_ring(self, need: int) -> None:
        size = len(self._pairs)
        if need <= size:
            return
        new_size = max(need, 2 * size)
        order = (self._head + np.arange(self.held)) % size
        pairs = np.zeros(new_size, dtype=self._pairs.dtype)
        ts = np.zeros(new_size, dtype=np.int64)
        num = np.zeros(new_size, dtype=np.int64)
        pairs[: self.held] = self._pairs[order]
        ts[: self.held] = self._ts[order]
        num[: self.held] = self._num[order]
        self._pairs, self._ts, self._num, self._head = pairs, ts, num, 0

    def _push(self, pairs: Codes, ts: NDArray[np.int64]) -> NDArray[np.bool_] | None:
        """Add records with their event times, then let out what the window no longer spans.

        A record whose time is already outside the window when it arrives (against the newest
        time read up to and including it) is counted in ``seq`` but never held; returns which
        records were held.
        """
        n = len(pairs)
        if n == 0:
            return None
        times = np.asarray(ts, dtype=np.int64)
        # Lateness is judged against the newest time when each record was read (a running
        # maximum), never against a record read after it: otherwise the verdict would depend
        # on how the stream was cut into batches.
        newest_then = np.maximum.accumulate(times)
        if self.newest is not None:
            np.maximum(newest_then, self.newest, out=newest_then)
        self.newest = int(newest_then[-1])
        if self.first_ts is None:
            self.first_ts = int(times[0])
        keep = times > newest_then - self.duration_ms
        numbers = self.seq + np.arange(n, dtype=np.int64)
        if not keep.all():
            pairs, times, numbers = pairs[keep], times[keep], numbers[keep]
        self.seq += n
        kept = len(pairs)
        self._grow_ring(self.held + kept)
        offset = 0
        for lo, hi in self._slots(self._head + self.held, kept):
            self._pairs[lo:hi] = pairs[offset : offset + hi - lo]
            self._ts[lo:hi] = times[offset : offset + hi - lo]
            self._num[lo:hi] = numbers[offset : offset + hi - lo]
            offset += hi - lo
        self.matrix += self._counts(pairs)
        self.held += kept
        self._evict(self.newest - self.duration_ms)
        return keep

    def _first_number(self) -> int:
        """The record number of the oldest held record (``seq`` when none is held)."""
        return int(self._num[self._head]) if self.held else self.seq

    def _first_logged(self) -> int:
        # An empty window still reports its newest record.
        return min(self._first_number(), self.seq - 1)

    def _evict(self, cutoff: int) -> None:
        """Let out the oldest read records while their time is at or before ``cutoff``."""
        gone = 0
        for lo, hi in self._slots(self._head, self.held):
            stop = _first_after(self._ts, lo, hi, cutoff)
            if stop > lo:
                self.matrix -= self._counts(self._pairs[lo:stop])
                gone += stop - lo
            if stop < hi:
                break
        self._head = (self._head + gone) % len(self._pairs)
        self.held -= gone

    def view(self, scores: bool = True) -> WindowView:
        """The window as a document needs it; an empty window reports its newest record."""
        labels, matrix = self._seen()
        last = self._log.get(self.seq - 1)
        first = self._log.get(self._first_number()) if self.held else last
        return WindowView(
            self.duration_ms,
            self.seq,
            self.held,
            labels,
            matrix,
            first,
            last,
            self.kind,
            self.full,
            self._score_view(scores),
        )

    def nbytes(self) -> int:
        return super().nbytes() + self._ts.nbytes + self._num.nbytes

    def snapshot(self) -> TimeSnapshot:
        order = (self._head + np.arange(self.held)) % len(self._pairs)
        return {
            **self._snapshot_base(self._pairs[order]),
            "duration_ms": self.duration_ms,
            "newest": self.newest,
            "first_ts": self.first_ts,
            "ts": self._ts[order],
            "num": self._num[order],
        }

    @classmethod
    def restore(
        cls, state: TimeSnapshot, duration_ms: int | None = None, score_bins: int = 0
    ) -> TimeWindow:
        """Rebuild a window from `snapshot`; a new duration lets out what it no longer spans."""
        cls._check(state)
        window = cls(duration_ms or state["duration_ms"], score_bins)
        pairs = window._restore_base(state)
        held = len(pairs)
        window._grow_ring(held)
        window._pairs[:held] = pairs
        window._ts[:held] = state["ts"]
        window._num[:held] = state["num"]
        window.held = held
        window.matrix += window._counts(window._pairs[:held])
        window.newest, window.first_ts = state["newest"], state["first_ts"]
        if window.newest is not None:
            window._evict(window.newest - window.duration_ms)
        window._log.forget_before(window._first_logged())
        window._restore_scores(state)
        return window


@dataclass(frozen=True, slots=True)
class TimePolicy(WindowPolicy[TimeWindow, TimeSnapshot]):
    """Windows of the last ``duration_ms`` of event time (``CONFUSION_WINDOW_KIND=time``)."""

    kind: ClassVar[WindowKind] = WindowKind.TIME
    duration_ms: int
    score_bins: int = 0

    def new(self) -> TimeWindow:
        return TimeWindow(self.duration_ms, self.score_bins)

    def restore(self, state: TimeSnapshot) -> TimeWindow:
        return TimeWindow.restore(state, self.duration_ms, self.score_bins)


def _first_after(ts: NDArray[np.int64], lo: int, hi: int, cutoff: int) -> int:
    """The first index in ``lo .. hi - 1`` whose time is after ``cutoff`` (``hi`` when none).

    Looks at a growing prefix (64, 128, ... rows) instead of the whole held range: a step lets
    out about as many records as it takes in, so the answer is near ``lo``.
    """
    start, span = lo, 64
    while start < hi:
        end = min(start + span, hi)
        after = ts[start:end] > cutoff
        first = int(after.argmax())
        if after[first]:
            return start + first
        start, span = end, span * 2
    return hi
