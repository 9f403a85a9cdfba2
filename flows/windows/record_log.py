"""Ids and event times of the records a window holds, kept compactly for its first and last record.

A document names the window's first and last record (id and time); nothing else needs them, so
they live in chunks of plain lists that are sealed into one compressed blob each instead of a
Python object per record.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import sys
import zlib
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

import orjson


class RecordLogSnapshot(TypedDict):
    """A `RecordLog` as checkpointed. ``compress`` is absent from the first checkpoints."""

    chunk: int
    compress: NotRequired[bool]
    sealed: list[tuple[int, Any]]  # (first record number, zlib blob or (ids, ts) lists)
    open_start: int
    open_ids: list[str | int]
    open_ts: list[int]


def _list_bytes(ids: list[str | int], ts: list[int]) -> int:
    return (
        sys.getsizeof(ids)
        + sys.getsizeof(ts)
        + sum(map(sys.getsizeof, ids))
        + sum(map(sys.getsizeof, ts))
    )


class RecordLog:
    """Ids and timestamps of the records a window holds, indexed by their sequence number.

    New records go to an open chunk of Python lists; a full chunk is sealed into one compressed
    blob (ids and timestamp deltas, JSON then zlib), which costs a few bytes per record for
    typical ids instead of a Python object per record. The window only ever asks for its first
    and last record, so one decoded chunk is cached for the window's head.
    """

    __slots__ = (
        "_cache",
        "_chunk",
        "_compress",
        "_open_ids",
        "_open_start",
        "_open_ts",
        "_sealed",
        "_starts",
    )

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
            self._open_ids.extend(ids[pos : pos + room])
            self._open_ts.extend(ts[pos : pos + room])
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
        total = sum(
            len(blob) if isinstance(blob, bytes) else _list_bytes(*blob) for _, blob in self._sealed
        )
        return total + _list_bytes(self._open_ids, self._open_ts)

    def snapshot(self) -> RecordLogSnapshot:
        return {
            "chunk": self._chunk,
            "compress": self._compress,
            "sealed": list(self._sealed),
            "open_start": self._open_start,
            "open_ids": list(self._open_ids),
            "open_ts": list(self._open_ts),
        }

    @classmethod
    def restore(cls, state: RecordLogSnapshot) -> RecordLog:
        log = cls(state["chunk"], state.get("compress", True))
        log._sealed = list(state["sealed"])
        log._starts = [start for start, _ in log._sealed]
        log._open_start = state["open_start"]
        log._open_ids = list(state["open_ids"])
        log._open_ts = list(state["open_ts"])
        return log
