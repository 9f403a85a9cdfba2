"""What every window kind shares: feeding, label codes, the ring of pair codes, snapshots.

A window keeps the records of one model as one pair code each (truth and prediction) in a ring
buffer, plus the count matrix those codes add up to (`flows.windows.pairs`); record ids and times
live in a `RecordLog`. `SlidingWindow` is fed one way only, `add(batch, every)`; a kind decides
which records it holds (`CountWindow` in `count`, `TimeWindow` in `time`) and is chosen by its
`WindowPolicy`, which builds new windows and restores checkpointed ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import ClassVar, Generic, Literal, NotRequired, TypedDict, TypeVar

import numpy as np
from numpy.typing import NDArray

from flows.errors import SnapshotError
from flows.parsing.batches import ModelColumns
from flows.windows.pairs import Codes, Counts, LabelCodes, code_dtype, pair_counts
from flows.windows.record_log import RecordLog, RecordLogSnapshot
from flows.windows.scores import ScoreSnapshot, ScoreView, ScoreWindow, Step, batch_rows

SNAPSHOT_VERSION: Literal[1] = 1


class WindowKind(StrEnum):
    """The window kinds; the value is what documents and snapshots say."""

    COUNT = "count"
    TIME = "time"


@dataclass(frozen=True, slots=True)
class WindowView:
    """What a document needs of a window at one moment; arrays are copies."""

    size: int
    seq: int
    count: int
    labels: list[str]
    matrix: Counts
    first: tuple[str | int, int]
    last: tuple[str | int, int]
    kind: WindowKind = WindowKind.COUNT
    full: bool = False
    scores: ScoreView | None = None  # when the window holds records with score maps


class WindowSnapshot(TypedDict):
    """What every window kind checkpoints; the matrix is left out because it is a recount.

    ``pairs`` are the held records' pair codes ``truth * cap + pred``, oldest first. ``kind``
    is absent from the first count-window checkpoints.
    """

    v: Literal[1]
    kind: NotRequired[str]
    seq: int
    labels: list[str]
    cap: int
    pairs: Codes
    log: RecordLogSnapshot
    scores: NotRequired[ScoreSnapshot | None]  # absent from checkpoints before score statistics


class SlidingWindow(ABC):
    """What every window kind shares: label codes, a ring of pair codes, the count matrix.

    Each record is one pair code ``truth * capacity + pred`` in the smallest unsigned dtype
    that holds it (one byte per record up to 16 labels), so the matrix is a bincount of the
    ring and eviction is a bincount of the slots being let go. A kind decides which records
    the window holds (`_push`, `_forget`, `view`); ids and timestamps live in a `RecordLog`.
    """

    kind: ClassVar[WindowKind]

    __slots__ = ("_cap", "_log", "_pairs", "codes", "held", "matrix", "score_bins", "scores", "seq")

    def __init__(self, ring: int, log: RecordLog, score_bins: int = 0) -> None:
        self.score_bins = score_bins  # CONFUSION_SCORE_BINS; 0: no score statistics
        self.scores: ScoreWindow | None = None  # from the first batch with score maps on
        self.seq = 0  # records added so far
        self.held = 0  # records in the window
        self.codes = LabelCodes()
        self._cap = 0  # label capacity: the matrix is cap x cap
        self.matrix: Counts = np.zeros((0, 0), dtype=np.int64)
        self._pairs: Codes = np.zeros(ring, dtype=np.uint8)
        self._log = log

    def add(self, batch: ModelColumns, every: int = 0) -> list[WindowView]:
        """Add a batch's records in read order, letting out those the window no longer holds.

        Returns the window as it stood after each record whose number (`seq`) is a multiple
        of ``every`` (none when ``every`` is 0): the moments a document is due, even inside
        the batch. The batch's codes index its own ``labels``; they are mapped to this
        window's codes once per batch.
        """
        n = len(batch)
        if n == 0:
            return []
        pairs = self._encode(batch.labels, batch.truth, batch.pred)
        # The whole batch is logged first: a view part way through reads its last record here.
        self._log.append(batch.ids, batch.ts.tolist())
        self.scores, rows = batch_rows(
            self.scores, self.score_bins, batch, self.held, len(self._pairs)
        )
        views, steps = self._walk(pairs, batch.ts, every)
        self._log.forget_before(self._first_logged())
        if rows is None or self.scores is None:
            return views
        # The score state follows all steps at once; each view gets the scores of its step.
        score_views = iter(self.scores.advance_steps(rows, steps))
        return [replace(view, scores=next(score_views)) for view in views]

    def _walk(
        self, pairs: Codes, ts: NDArray[np.int64], every: int
    ) -> tuple[list[WindowView], list[Step]]:
        """Push the records step by step (a step ends where a document is due); return the
        views at those steps and, per step, what the score state must follow: the rows that
        arrived, how many records left, which the window took in, whether a view is due."""
        views: list[WindowView] = []
        steps: list[Step] = []
        n, pos = len(pairs), 0
        while pos < n:
            end = n if every <= 0 else pos + min(n - pos, every - self.seq % every)
            held = self.held
            kept = self._push(pairs[pos:end], ts[pos:end])
            due = every > 0 and self.seq % every == 0
            arrived = end - pos if kept is None else int(kept.sum())
            steps.append((pos, end, held + arrived - self.held, kept, due))
            pos = end
            if due:
                views.append(self.view(scores=False))  # its scores come after the walk
        return views, steps

    @abstractmethod
    def _push(self, pairs: Codes, ts: NDArray[np.int64]) -> NDArray[np.bool_] | None:
        """Add records given as this window's pair codes (``ts``: their event times) and let
        out what leaves; return which of them the window took in (None: all of them)."""

    @abstractmethod
    def _first_logged(self) -> int:
        """The number of the oldest record whose id and time a view may still need."""

    @abstractmethod
    def view(self, scores: bool = True) -> WindowView:
        """The window as a document needs it: labels seen so far, and their matrix (and the
        score statistics, unless ``scores`` is False)."""

    @abstractmethod
    def snapshot(self) -> WindowSnapshot:
        """A versioned, picklable copy (arrays are copies, never the live buffers)."""

    def _encode(self, labels: Sequence[str], truth: Codes, pred: Codes) -> Codes:
        """The records' pair codes in this window, from batch codes (indexes into ``labels``).

        Only the labels these records use join the window, so a label another model uses in
        the same batch does not appear in this model's matrix.
        """
        used = np.bincount(truth, minlength=len(labels)) + np.bincount(pred, minlength=len(labels))
        remap = np.zeros(len(labels), dtype=np.int64)
        nonzero = np.flatnonzero(used)
        known = len(self.codes)
        remap[nonzero] = self.codes.encode([labels[i] for i in nonzero.tolist()])
        if len(self.codes) > known:  # new labels: note the record each first appears in
            for code in range(known, len(self.codes)):
                batch_code = int(nonzero[np.flatnonzero(remap[nonzero] == code)[0]])
                at = np.flatnonzero((truth == batch_code) | (pred == batch_code))[0]
                self.codes.first_seen[code] = self.seq + int(at)
        self._grow(len(self.codes))
        return (remap[truth] * self._cap + remap[pred]).astype(self._pairs.dtype)

    def _grow(self, n_labels: int) -> None:
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

    def _counts(self, pairs: Codes) -> Counts:
        return pair_counts(pairs, self._cap)

    def _slots(self, start: int, n: int) -> list[tuple[int, int]]:
        """Ring slot ranges of ``n`` consecutive slots from slot ``start`` (mod the ring)."""
        size = len(self._pairs)
        lo = start % size
        if lo + n <= size:
            return [(lo, lo + n)]
        return [(lo, size), (0, lo + n - size)]

    def _seen(self) -> tuple[list[str], Counts]:
        """Labels seen up to the last added record, and their matrix (a copy)."""
        n = len(self.codes)
        labels = list(self.codes.labels)
        matrix = self.matrix[:n, :n].copy()
        if self.codes.first_seen and max(self.codes.first_seen) >= self.seq:
            seen = [i for i, at in enumerate(self.codes.first_seen) if at < self.seq]
            labels = [labels[i] for i in seen]
            matrix = matrix[seen][:, seen]
        return labels, matrix

    def _snapshot_base(self, pairs: Codes) -> WindowSnapshot:
        return {
            "v": SNAPSHOT_VERSION,
            "kind": self.kind.value,
            "seq": self.seq,
            "labels": list(self.codes.labels),
            "cap": self._cap,
            "pairs": pairs,
            "log": self._log.snapshot(),
            "scores": None if self.scores is None else self.scores.snapshot(),
        }

    def _score_view(self, scores: bool = True) -> ScoreView | None:
        """The score statistics for a view, when asked and the window holds a scored record."""
        if not scores or self.scores is None or self.scores.scored == 0:
            return None
        return self.scores.view()

    def _restore_scores(self, state: WindowSnapshot) -> None:
        """Take the score state of ``state`` once the kind has restored its records.

        A checkpoint written with other ``CONFUSION_SCORE_BINS`` (or before score statistics)
        restarts them: the held records count as unscored, later score maps are counted.
        """
        saved = state.get("scores")
        if saved is None or self.score_bins == 0 or saved["bins"] != self.score_bins:
            return
        self.scores = ScoreWindow.restore(saved, len(self._pairs))
        self.scores.evict(self.scores.count - self.held)  # the window may have shrunk

    @classmethod
    def _check(cls, state: WindowSnapshot) -> None:
        """Refuse a snapshot of another version or window kind."""
        if state.get("v") != SNAPSHOT_VERSION or state.get("kind", "count") != cls.kind:
            raise SnapshotError(
                "the checkpoint holds a different window kind or version; "
                "reset the recovery directory to change CONFUSION_WINDOW_KIND"
            )

    def _restore_base(self, state: WindowSnapshot) -> Counts:
        """Take labels, sequence number and record log from ``state`` (checked by `_check`);
        return its pair codes, oldest first, re-coded to this window's label capacity."""
        self.codes = LabelCodes(state["labels"])
        self._grow(len(self.codes))
        self.seq = state["seq"]
        self._log = RecordLog.restore(state["log"])
        pairs = np.asarray(state["pairs"], dtype=np.int64)
        cap = max(state["cap"], 1)
        return (pairs // cap) * max(self._cap, 1) + pairs % cap

    def nbytes(self) -> int:
        """Bytes of state held (ring, matrix, record log, labels)."""
        return (
            self._pairs.nbytes
            + self.matrix.nbytes
            + self._log.nbytes()
            + sum(len(label) + 50 for label in self.codes.labels)
            + (0 if self.scores is None else self.scores.nbytes())
        )


W = TypeVar("W", bound=SlidingWindow)
S = TypeVar("S", bound=WindowSnapshot)


class WindowPolicy(ABC, Generic[W, S]):
    """A window kind and its extent: builds new windows and restores checkpointed ones."""

    kind: ClassVar[WindowKind]

    @abstractmethod
    def new(self) -> W:
        """An empty window."""

    @abstractmethod
    def restore(self, state: S) -> W:
        """The window of a snapshot, fitted to this policy's extent."""
