"""Count windows: the last ``size`` records of one model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from flows.windows.base import SlidingWindow, WindowKind, WindowPolicy, WindowSnapshot, WindowView
from flows.windows.pairs import Codes
from flows.windows.record_log import RecordLog

SCALAR_BELOW = 4  # segments this short are added record by record
COMPRESS_FROM = 8_192  # window size from which the record log compresses its chunks


class CountSnapshot(WindowSnapshot):
    size: int


class CountWindow(SlidingWindow):
    """The last ``size`` records of one model; record n sits at ring slot n % size."""

    kind = WindowKind.COUNT

    __slots__ = ("size",)

    def __init__(self, size: int, score_bins: int = 0) -> None:
        if size < 1:
            raise ValueError("window size must be >= 1")
        # Small windows keep ids as they are; big ones pay a little CPU for a lot less memory.
        super().__init__(
            size,
            RecordLog(max(16, min(4096, size // 8)), compress=size >= COMPRESS_FROM),
            score_bins,
        )
        self.size = size

    def _push(self, pairs: Codes, ts: NDArray[np.int64]) -> None:
        """Count windows let records out by number; the times only go to the record log.

        Every record is taken in (returns None)."""
        n = len(pairs)
        if n <= SCALAR_BELOW:  # emitting every record or so: numpy's per-call cost dominates
            self._push_scalar(pairs.tolist())
            return
        if n >= self.size:  # the batch alone fills the window: recount its tail
            pairs = pairs[n - self.size :]
            self.seq += n
            for (lo, hi), offset in zip(
                self._slots(self.seq - self.size, self.size),
                (0, self.size - self.seq % self.size),
                strict=False,
            ):
                self._pairs[lo:hi] = pairs[offset : offset + hi - lo]
            self.matrix[:] = self._counts(pairs)
            self.held = self.size
            return
        first, stop = self.seq - self.held, self.seq + n - self.size
        if stop > first:  # records first .. stop - 1 fall out
            for lo, hi in self._slots(first, stop - first):
                self.matrix -= self._counts(self._pairs[lo:hi])
        offset = 0
        for lo, hi in self._slots(self.seq, n):
            self._pairs[lo:hi] = pairs[offset : offset + hi - lo]
            offset += hi - lo
        self.matrix += self._counts(pairs)
        self.seq += n
        self.held = min(self.held + n, self.size)

    def _push_scalar(self, pairs: list[int]) -> None:
        flat, ring, size = self.matrix.reshape(-1), self._pairs, self.size
        for pair in pairs:
            slot = self.seq % size
            if self.held == size:  # the window is full: its oldest record sits in this slot
                flat[ring[slot]] -= 1
            else:
                self.held += 1
            ring[slot] = pair
            flat[pair] += 1
            self.seq += 1

    def _first_logged(self) -> int:
        return self.seq - self.held

    def view(self, scores: bool = True) -> WindowView:
        labels, matrix = self._seen()
        return WindowView(
            self.size,
            self.seq,
            self.held,
            labels,
            matrix,
            self._log.get(self.seq - self.held),
            self._log.get(self.seq - 1),
            self.kind,
            self.held == self.size,
            self._score_view(scores),
        )

    def _held_pairs(self) -> Codes:
        """The pair codes in the window, oldest first (a copy)."""
        if not self.held:
            return self._pairs[:0].copy()
        return np.concatenate(
            [self._pairs[lo:hi] for lo, hi in self._slots(self.seq - self.held, self.held)]
        )

    def snapshot(self) -> CountSnapshot:
        return {**self._snapshot_base(self._held_pairs()), "size": self.size}

    @classmethod
    def restore(
        cls, state: CountSnapshot, size: int | None = None, score_bins: int = 0
    ) -> CountWindow:
        """Rebuild a window from `snapshot`; a new ``size`` keeps the newest records that fit."""
        cls._check(state)
        window = cls(size or state["size"], score_bins)
        pairs = window._restore_base(state)
        window.seq -= len(pairs)  # then the held records are added again, oldest first
        window._push(pairs.astype(window._pairs.dtype), np.zeros(len(pairs), dtype=np.int64))
        window._log.forget_before(window._first_logged())
        window._restore_scores(state)
        return window


@dataclass(frozen=True, slots=True)
class CountPolicy(WindowPolicy[CountWindow, CountSnapshot]):
    """Windows of the last ``size`` records (``CONFUSION_WINDOW_KIND=count``)."""

    kind: ClassVar[WindowKind] = WindowKind.COUNT
    size: int
    score_bins: int = 0

    def new(self) -> CountWindow:
        return CountWindow(self.size, self.score_bins)

    def restore(self, state: CountSnapshot) -> CountWindow:
        return CountWindow.restore(state, self.size, self.score_bins)
