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

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flows.errors import SnapshotError
from flows.windows import (
    SNAPSHOT_VERSION,
    Codes,
    Counts,
    LabelCodes,
    RecordLog,
    WindowView,
    code_dtype,
)


class TimeWindow:
    """The records of one model within ``duration_ms`` of the newest event time."""

    kind = "time"

    __slots__ = ("_cap", "_head", "_log", "_pairs", "_ts", "codes", "duration_ms", "first_ts",
                 "held", "matrix", "newest", "seq")

    def __init__(self, duration_ms: int) -> None:
        if duration_ms < 1:
            raise ValueError("window duration must be >= 1 ms")
        self.duration_ms = duration_ms
        self.seq = 0
        self.held = 0
        self.newest: int | None = None  # the window ends here (the newest event time)
        self.first_ts: int | None = None  # event time of the first record ever (for "full")
        self.codes = LabelCodes()
        self._cap = 0
        self.matrix: Counts = np.zeros((0, 0), dtype=np.int64)
        self._pairs: Codes = np.zeros(64, dtype=np.uint8)
        self._ts: NDArray[np.int64] = np.zeros(64, dtype=np.int64)
        self._head = 0  # ring slot of the oldest held record
        self._log = RecordLog(1024, compress=False)

    @property
    def size(self) -> int:
        """The duration in milliseconds (a document's ``window.size``)."""
        return self.duration_ms

    @property
    def count(self) -> int:
        return self.held

    @property
    def full(self) -> bool:
        """Whether the stream has covered one whole duration yet."""
        return (self.newest is not None and self.first_ts is not None
                and self.newest - self.first_ts >= self.duration_ms)

    def _grow_labels(self, n_labels: int) -> None:
        old = self._cap
        if n_labels <= old:
            return
        cap = max(n_labels, 2 * old, 2)
        grown = np.zeros((cap, cap), dtype=np.int64)
        grown[:old, :old] = self.matrix
        self.matrix = grown
        pairs = self._pairs.astype(np.int64)
        if old:
            pairs = (pairs // old) * cap + pairs % old
        self._pairs = pairs.astype(code_dtype(cap * cap))
        self._cap = cap

    def _grow_ring(self, need: int) -> None:
        size = len(self._pairs)
        if need <= size:
            return
        new_size = max(need, 2 * size)
        order = (self._head + np.arange(self.held)) % size
        pairs = np.zeros(new_size, dtype=self._pairs.dtype)
        ts = np.zeros(new_size, dtype=np.int64)
        pairs[:self.held] = self._pairs[order]
        ts[:self.held] = self._ts[order]
        self._pairs, self._ts, self._head = pairs, ts, 0

    def encode(self, labels: Sequence[str], truth: Codes, pred: Codes) -> tuple[Codes, Codes]:
        """Map batch codes to this window's codes (see `CountWindow.encode`)."""
        used = np.bincount(truth, minlength=len(labels)) + np.bincount(pred, minlength=len(labels))
        remap = np.zeros(len(labels), dtype=np.int64)
        nonzero = np.flatnonzero(used)
        known = len(self.codes)
        remap[nonzero] = self.codes.encode([labels[i] for i in nonzero.tolist()])
        for code in range(known, len(self.codes)):
            batch_code = int(nonzero[np.flatnonzero(remap[nonzero] == code)[0]])
            at = np.flatnonzero((truth == batch_code) | (pred == batch_code))[0]
            self.codes.first_seen[code] = self.seq + int(at)
        self._grow_labels(len(self.codes))
        return remap[truth], remap[pred]

    def log(self, ids: Sequence[str | int], ts: Sequence[int] | NDArray[np.int64]) -> None:
        self._log.append(self._log.end, ids, ts.tolist() if isinstance(ts, np.ndarray) else ts)

    def forget(self) -> None:
        self._log.forget_before(self.seq - self.held)

    def _counts(self, pairs: Codes) -> Counts:
        cap = self._cap
        return np.bincount(pairs, minlength=cap * cap).reshape(cap, cap)

    def _slots(self, start: int, n: int) -> list[tuple[int, int]]:
        size = len(self._pairs)
        lo = start % size
        if lo + n <= size:
            return [(lo, lo + n)]
        return [(lo, size), (0, lo + n - size)]

    def add_codes(self, truth: Codes, pred: Codes, ts: NDArray[np.int64]) -> None:
        """Add records with their event times, then let out what the window no longer spans."""
        n = len(truth)
        if n == 0:
            return
        self._grow_ring(self.held + n)
        pairs = (np.asarray(truth, dtype=np.int64) * self._cap + pred).astype(self._pairs.dtype)
        times = np.asarray(ts, dtype=np.int64)
        offset = 0
        for lo, hi in self._slots(self._head + self.held, n):
            self._pairs[lo:hi] = pairs[offset:offset + hi - lo]
            self._ts[lo:hi] = times[offset:offset + hi - lo]
            offset += hi - lo
        self.matrix += self._counts(pairs)
        self.held += n
        self.seq += n
        newest = int(times.max())
        self.newest = newest if self.newest is None else max(self.newest, newest)
        if self.first_ts is None:
            self.first_ts = int(times[0])
        self._evict(self.newest - self.duration_ms)

    def _evict(self, cutoff: int) -> None:
        """Let out the oldest read records while their time is at or before ``cutoff``."""
        gone = 0
        for lo, hi in self._slots(self._head, self.held):
            inside = np.flatnonzero(self._ts[lo:hi] > cutoff)
            stop = lo + (int(inside[0]) if len(inside) else hi - lo)
            if stop > lo:
                self.matrix -= self._counts(self._pairs[lo:stop])
                gone += stop - lo
            if stop < hi:
                break
        self._head = (self._head + gone) % len(self._pairs)
        self.held -= gone

    def view(self) -> WindowView:
        """The window as a document needs it; an empty window reports its newest record."""
        n = len(self.codes)
        labels = list(self.codes.labels)
        matrix = self.matrix[:n, :n].copy()
        if self.codes.first_seen and max(self.codes.first_seen) >= self.seq:
            seen = [i for i, at in enumerate(self.codes.first_seen) if at < self.seq]
            labels = [labels[i] for i in seen]
            matrix = matrix[seen][:, seen]
        last = self._log.get(self.seq - 1)
        first = self._log.get(self.seq - self.held) if self.held else last
        return WindowView(self.duration_ms, self.seq, self.held, labels, matrix, first, last,
                          self.kind, self.full)

    def nbytes(self) -> int:
        return (self._pairs.nbytes + self._ts.nbytes + self.matrix.nbytes + self._log.nbytes()
                + sum(len(label) + 50 for label in self.codes.labels))

    def snapshot(self) -> dict[str, Any]:
        """A versioned, picklable copy of the held records (the matrix is a recount)."""
        order = (self._head + np.arange(self.held)) % len(self._pairs)
        return {"v": SNAPSHOT_VERSION, "kind": self.kind, "duration_ms": self.duration_ms,
                "seq": self.seq, "newest": self.newest, "first_ts": self.first_ts,
                "labels": list(self.codes.labels), "cap": self._cap,
                "pairs": self._pairs[order], "ts": self._ts[order], "log": self._log.snapshot()}

    @classmethod
    def restore(cls, state: dict[str, Any], duration_ms: int | None = None) -> TimeWindow:
        if state.get("v") != SNAPSHOT_VERSION or state.get("kind") != cls.kind:
            raise SnapshotError("the checkpoint holds a different window kind or version; "
                                "reset the recovery directory to change CONFUSION_WINDOW_KIND")
        window = cls(duration_ms or state["duration_ms"])
        window.codes = LabelCodes(state["labels"])
        window._grow_labels(len(window.codes))
        pairs = np.asarray(state["pairs"], dtype=np.int64)
        cap = max(state["cap"], 1)
        window.seq = state["seq"] - len(pairs)
        window.add_codes(pairs // cap, pairs % cap, np.asarray(state["ts"], dtype=np.int64))
        window.newest, window.first_ts = state["newest"], state["first_ts"]
        if window.newest is not None:
            window._evict(window.newest - window.duration_ms)
        window._log = RecordLog.restore(state["log"])
        window.forget()
        return window
