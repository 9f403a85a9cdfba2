"""Sliding windows of a confusion matrix, held compactly and updated exactly.

A window keeps the records of one model as one small-integer pair code each (truth and
prediction) in a ring buffer, plus the count matrix those codes add up to. Adding records adds
their codes to the matrix; the records that leave are subtracted with the very same operation, so
eviction is the exact inverse of addition and the matrix always equals a recount of the ring.
Record ids and timestamps (needed only for the window's first and last record) live in a
`RecordLog` of compressed chunks instead of a Python object per record.

`SlidingWindow` is fed one way only, `add(batch, every)`; a window kind decides which records it
holds (`CountWindow` here, `TimeWindow` in `flows.time_windows`) and is chosen by its policy
(`CountPolicy`, `TimePolicy`), which builds new windows and restores them from snapshots.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import sys
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, NotRequired, TypedDict, TypeVar

import numpy as np
import orjson
from numpy.typing import NDArray

from flows.columns import LabelTable
from flows.errors import SnapshotError
from flows.records import ModelColumns

Codes = NDArray[np.integer[Any]]
Counts = NDArray[np.int64]

SNAPSHOT_VERSION: Literal[1] = 1
SCALAR_BELOW = 4  # segments this short are added record by record
COMPRESS_FROM = 8_192  # window size from which the record log compresses its chunks


class WindowKind(StrEnum):
    """The window kinds; the value is what documents and snapshots say."""

    COUNT = "count"
    TIME = "time"


def pair_counts(pairs: Codes, cap: int) -> Counts:
    """Count matrix of pair codes ``truth * cap + pred``: rows are truth, columns prediction.

    The one kernel windows add with and evict with, so eviction is exactly addition undone.
    """
    return np.bincount(pairs, minlength=cap * cap).reshape(cap, cap)


def code_dtype(n_labels: int) -> np.dtype[Any]:
    """The smallest unsigned dtype that holds every code: one byte per code up to 256 labels."""
    if n_labels <= 1 << 8:
        return np.dtype(np.uint8)
    if n_labels <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


class LabelCodes(LabelTable):
    """A window's label table, which also notes the record each label first appeared in.

    Codes never change once given, so the ring never needs re-encoding; the sorted order the
    documents need is applied only when a document is built.
    """

    __slots__ = ("first_seen",)

    def __init__(self, labels: Sequence[str] = ()) -> None:
        super().__init__(labels)
        # Record number at which each label first appeared (-1: before this window existed),
        # so a document emitted part way through a batch lists only labels seen by then.
        self.first_seen: list[int] = [-1] * len(self.labels)

    def code(self, label: str) -> int:
        if label not in self.index:
            self.first_seen.append(-1)
        return super().code(label)


# ------------------------------------------------------------------------------ record log


class RecordLogSnapshot(TypedDict):
    """A `RecordLog` as checkpointed. ``compress`` is absent from the first checkpoints."""

    chunk: int
    compress: NotRequired[bool]
    sealed: list[tuple[int, Any]]  # (first record number, zlib blob or (ids, ts) lists)
    open_start: int
    open_ids: list[str | int]
    open_ts: list[int]


def _list_bytes(ids: list[str | int], ts: list[int]) -> int:
    return (sys.getsizeof(ids) + sys.getsizeof(ts) + sum(map(sys.getsizeof, ids))
            + sum(map(sys.getsizeof, ts)))


class RecordLog:
    """Ids and timestamps of the records a window holds, indexed by their sequence number.

    New records go to an open chunk of Python lists; a full chunk is sealed into one compressed
    blob (ids and timestamp deltas, JSON then zlib), which costs a few bytes per record for
    typical ids instead of a Python object per record. The window only ever asks for its first
    and last record, so one decoded chunk is cached for the window's head.
    """

    __slots__ = ("_cache", "_chunk", "_compress", "_open_ids", "_open_start", "_open_ts",
                 "_sealed", "_starts")

    def __init__(self, chunk: int, compress: bool = True) -> None:
        self._chunk = chunk
        self._compress = compress
        self._sealed: list[tuple[int, Any]] = []
        self._starts: list[int] = []
        self._open_start = 0
        self._open_ids: list[str | int] = []
        self._open_ts: list[int] = []
        self._cache: tuple[int, list[str | int], list[int]] | None = None

    def append(self, ids: Sequence[str | int], ts: Sequence[int]) -> None:
        """Append the next records, numbered on from the last one appended."""
        pos = 0
        while pos < len(ids):
            room = self._chunk - len(self._open_ids)
            self._open_ids.extend(ids[pos:pos + room])
            self._open_ts.extend(ts[pos:pos + room])
            pos += room
            if len(self._open_ids) >= self._chunk:
                self._seal()

    def _seal(self) -> None:
        ts = self._open_ts
        if self._compress:
            deltas = [ts[0], *map(operator.sub, ts[1:], ts[:-1])]
            blob: Any = zlib.compress(orjson.dumps([self._open_ids, deltas]), 1)
        else:
            blob = (self._open_ids, ts)
        self._sealed.append((self._open_start, blob))
        self._starts.append(self._open_start)
        self._open_start += len(self._open_ids)
        self._open_ids, self._open_ts = [], []

    @staticmethod
    def _unpack(blob: Any) -> tuple[list[str | int], list[int]]:
        if isinstance(blob, tuple):
            return blob
        ids, deltas = orjson.loads(zlib.decompress(blob))
        return ids, list(itertools.accumulate(deltas))

    def forget_before(self, first: int) -> None:
        """Drop sealed chunks whose records all precede record ``first``."""
        drop = 0
        while drop < len(self._sealed) and self._next_start(drop) <= first:
            drop += 1
        if drop:
            del self._sealed[:drop]
            del self._starts[:drop]

    def _next_start(self, i: int) -> int:
        return self._starts[i + 1] if i + 1 < len(self._starts) else self._open_start

    def get(self, seq: int) -> tuple[str | int, int]:
        """The id and timestamp of record number ``seq`` (which must still be held)."""
        if seq >= self._open_start:
            i = seq - self._open_start
            return self._open_ids[i], self._open_ts[i]
        chunk = bisect.bisect_right(self._starts, seq) - 1
        start, blob = self._sealed[chunk]
        if self._cache is None or self._cache[0] != start:
            ids, ts = self._unpack(blob)
            self._cache = (start, ids, ts)
        return self._cache[1][seq - start], self._cache[2][seq - start]

    def nbytes(self) -> int:
        """Bytes held: compressed blobs, or the Python lists and objects of plain chunks."""
        total = sum(len(blob) if isinstance(blob, bytes) else _list_bytes(*blob)
                    for _, blob in self._sealed)
        return total + _list_bytes(self._open_ids, self._open_ts)

    def snapshot(self) -> RecordLogSnapshot:
        return {"chunk": self._chunk, "compress": self._compress, "sealed": list(self._sealed),
                "open_start": self._open_start, "open_ids": list(self._open_ids),
                "open_ts": list(self._open_ts)}

    @classmethod
    def restore(cls, state: RecordLogSnapshot) -> RecordLog:
        log = cls(state["chunk"], state.get("compress", True))
        log._sealed = list(state["sealed"])
        log._starts = [start for start, _ in log._sealed]
        log._open_start = state["open_start"]
        log._open_ids = list(state["open_ids"])
        log._open_ts = list(state["open_ts"])
        return log


# ---------------------------------------------------------------------------- the windows


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


class SlidingWindow(ABC):
    """What every window kind shares: label codes, a ring of pair codes, the count matrix.

    Each record is one pair code ``truth * capacity + pred`` in the smallest unsigned dtype
    that holds it (one byte per record up to 16 labels), so the matrix is a bincount of the
    ring and eviction is a bincount of the slots being let go. A kind decides which records
    the window holds (`_push`, `_forget`, `view`); ids and timestamps live in a `RecordLog`.
    """

    kind: ClassVar[WindowKind]

    __slots__ = ("_cap", "_log", "_pairs", "codes", "held", "matrix", "seq")

    def __init__(self, ring: int, log: RecordLog) -> None:
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
        truth, pred = self._encode(batch.labels, batch.truth, batch.pred)
        # The whole batch is logged first: a view part way through reads its last record here.
        self._log.append(batch.ids, batch.ts.tolist())
        views: list[WindowView] = []
        if every <= 0:
            self._push(truth, pred, batch.ts)
        else:
            pos = 0
            while pos < n:
                end = pos + min(n - pos, every - self.seq % every)
                self._push(truth[pos:end], pred[pos:end], batch.ts[pos:end])
                pos = end
                if self.seq % every == 0:
                    views.append(self.view())
        self._log.forget_before(self._first_logged())
        return views

    @abstractmethod
    def _push(self, truth: Codes, pred: Codes, ts: NDArray[np.int64]) -> None:
        """Add encoded records (``ts``: their event times) and let out what leaves."""

    @abstractmethod
    def _first_logged(self) -> int:
        """The number of the oldest record whose id and time a view may still need."""

    @abstractmethod
    def view(self) -> WindowView:
        """The window as a document needs it: labels seen so far, and their matrix."""

    @abstractmethod
    def snapshot(self) -> WindowSnapshot:
        """A versioned, picklable copy (arrays are copies, never the live buffers)."""

    def _encode(self, labels: Sequence[str], truth: Codes, pred: Codes) -> tuple[Codes, Codes]:
        """Map batch codes (indexes into ``labels``) to this window's codes.

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
        return remap[truth], remap[pred]

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

    def _pair_codes(self, truth: Codes, pred: Codes) -> Codes:
        return (np.asarray(truth, dtype=np.int64) * self._cap + pred).astype(self._pairs.dtype)

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
        return {"v": SNAPSHOT_VERSION, "kind": self.kind.value, "seq": self.seq,
                "labels": list(self.codes.labels), "cap": self._cap, "pairs": pairs,
                "log": self._log.snapshot()}

    @classmethod
    def _check(cls, state: WindowSnapshot) -> None:
        """Refuse a snapshot of another version or window kind."""
        if state.get("v") != SNAPSHOT_VERSION or state.get("kind", "count") != cls.kind:
            raise SnapshotError("the checkpoint holds a different window kind or version; "
                                "reset the recovery directory to change CONFUSION_WINDOW_KIND")

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
        return (self._pairs.nbytes + self.matrix.nbytes + self._log.nbytes()
                + sum(len(label) + 50 for label in self.codes.labels))


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


# ---------------------------------------------------------------------------- count windows


class CountSnapshot(WindowSnapshot):
    size: int


class CountWindow(SlidingWindow):
    """The last ``size`` records of one model; record n sits at ring slot n % size."""

    kind = WindowKind.COUNT

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("window size must be >= 1")
        # Small windows keep ids as they are; big ones pay a little CPU for a lot less memory.
        super().__init__(size, RecordLog(max(16, min(4096, size // 8)),
                                         compress=size >= COMPRESS_FROM))
        self.size = size

    def _push(self, truth: Codes, pred: Codes, ts: NDArray[np.int64]) -> None:
        """Count windows let records out by number; the times only go to the record log."""
        n = len(truth)
        if n <= SCALAR_BELOW:  # emitting every record or so: numpy's per-call cost dominates
            self._push_scalar(truth.tolist(), pred.tolist())
            return
        pairs = self._pair_codes(truth, pred)
        if n >= self.size:  # the batch alone fills the window: recount its tail
            pairs = pairs[n - self.size:]
            self.seq += n
            for (lo, hi), offset in zip(self._slots(self.seq - self.size, self.size),
                                        (0, self.size - self.seq % self.size), strict=False):
                self._pairs[lo:hi] = pairs[offset:offset + hi - lo]
            self.matrix[:] = self._counts(pairs)
            self.held = self.size
            return
        first, stop = self.seq - self.held, self.seq + n - self.size
        if stop > first:  # records first .. stop - 1 fall out
            for lo, hi in self._slots(first, stop - first):
                self.matrix -= self._counts(self._pairs[lo:hi])
        offset = 0
        for lo, hi in self._slots(self.seq, n):
            self._pairs[lo:hi] = pairs[offset:offset + hi - lo]
            offset += hi - lo
        self.matrix += self._counts(pairs)
        self.seq += n
        self.held = min(self.held + n, self.size)

    def _push_scalar(self, truth: list[int], pred: list[int]) -> None:
        flat, ring, size, cap = self.matrix.reshape(-1), self._pairs, self.size, self._cap
        for t, p in zip(truth, pred, strict=True):
            slot = self.seq % size
            if self.held == size:  # the window is full: its oldest record sits in this slot
                flat[ring[slot]] -= 1
            else:
                self.held += 1
            pair = t * cap + p
            ring[slot] = pair
            flat[pair] += 1
            self.seq += 1

    def _first_logged(self) -> int:
        return self.seq - self.held

    def view(self) -> WindowView:
        labels, matrix = self._seen()
        return WindowView(self.size, self.seq, self.held, labels, matrix,
                          self._log.get(self.seq - self.held), self._log.get(self.seq - 1),
                          self.kind, self.held == self.size)

    def _held_pairs(self) -> Codes:
        """The pair codes in the window, oldest first (a copy)."""
        if not self.held:
            return self._pairs[:0].copy()
        return np.concatenate([self._pairs[lo:hi]
                               for lo, hi in self._slots(self.seq - self.held, self.held)])

    def snapshot(self) -> CountSnapshot:
        return {**self._snapshot_base(self._held_pairs()), "size": self.size}

    @classmethod
    def restore(cls, state: CountSnapshot, size: int | None = None) -> CountWindow:
        """Rebuild a window from `snapshot`; a new ``size`` keeps the newest records that fit."""
        cls._check(state)
        window = cls(size or state["size"])
        pairs = window._restore_base(state)
        window.seq -= len(pairs)  # then the held records are added again, oldest first
        cap = max(window._cap, 1)
        window._push(pairs // cap, pairs % cap, np.zeros(len(pairs), dtype=np.int64))
        window._log.forget_before(window._first_logged())
        return window


@dataclass(frozen=True, slots=True)
class CountPolicy(WindowPolicy[CountWindow, CountSnapshot]):
    """Windows of the last ``size`` records (``CONFUSION_WINDOW_KIND=count``)."""

    kind: ClassVar[WindowKind] = WindowKind.COUNT
    size: int

    def new(self) -> CountWindow:
        return CountWindow(self.size)

    def restore(self, state: CountSnapshot) -> CountWindow:
        return CountWindow.restore(state, self.size)
