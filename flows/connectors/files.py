"""JSON-lines files: a resumable source of raw batches and an exactly-once sink.

The source hands the dataflow one `RawBatch` per poll instead of one item per line, which keeps
Bytewax's per-item cost off the per-record path. The sink truncates its file back to the last
snapshot's offset when it resumes, so what a crash replays is written once, not twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.output.documents import now_ms
from flows.records import RawBatch
from flows.telemetry import Heartbeat

X = TypeVar("X")


class _LinesPartition(StatefulSourcePartition[RawBatch, tuple[int, int]]):
    def __init__(self, path: Path, batch_size: int, resume: tuple[int, int] | None,
                 heartbeat: Heartbeat) -> None:
        self._path = path
        self._f = path.open("rb")
        self._offset, self._line = resume or (0, 0)
        self._f.seek(self._offset)
        self._batch_size = batch_size
        self._heartbeat = heartbeat

    def next_batch(self) -> list[RawBatch]:
        self._heartbeat.beat()
        lines = list(islice(self._f, self._batch_size))
        if not lines:
            raise StopIteration
        first = self._line + 1
        self._line += len(lines)
        self._offset = self._f.tell()
        values = [line.rstrip(b"\r\n") for line in lines]
        positions = list(range(first, first + len(values)))
        if b"" in values or any(map(bytes.isspace, values)):  # a blank line holds no record
            kept = [(v, p) for v, p in zip(values, positions, strict=True) if v.strip()]
            values, positions = [v for v, _ in kept], [p for _, p in kept]
        arrival = now_ms()
        return [RawBatch(values, [arrival] * len(values), str(self._path), positions)]

    def snapshot(self) -> tuple[int, int]:
        return (self._offset, self._line)

    def close(self) -> None:
        self._f.close()


class JsonLinesSource(FixedPartitionedSource[RawBatch, tuple[int, int]]):
    """Reads a JSON-lines file in batches; resumes at the byte offset of its last snapshot."""

    def __init__(self, path: Path, batch_size: int, heartbeat: Heartbeat | None = None) -> None:
        self.path = path
        self.batch_size = batch_size
        self.heartbeat = heartbeat or Heartbeat(None)

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: tuple[int, int] | None) -> _LinesPartition:
        return _LinesPartition(self.path, self.batch_size, resume_state, self.heartbeat)


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)


class _JsonLinesPartition(StatefulSinkPartition[X, int], Generic[X]):
    def __init__(self, path: Path, resume: int | None, encode: Callable[[X], bytes]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: BinaryIO = path.open("r+b" if path.exists() else "w+b")
        self._f.seek(resume or 0)
        self._f.truncate()  # a fresh run starts a fresh file; a resumed one drops the replay
        self._encode = encode

    def write_batch(self, values: list[X]) -> None:
        self._f.write(b"".join(map(self._encode, values)))

    def snapshot(self) -> int:
        self._f.flush()
        os.fsync(self._f.fileno())
        return self._f.tell()

    def close(self) -> None:
        self._f.flush()
        self._f.close()


class JsonLinesSink(FixedPartitionedSink[X, int], Generic[X]):
    """Appends one JSON document per line to one file, exactly once across crash and resume."""

    def __init__(self, path: Path, encode: Callable[[X], bytes] = encode_json) -> None:
        self.path = path
        self.encode = encode

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str,
                   resume_state: int | None) -> _JsonLinesPartition[X]:
        return _JsonLinesPartition(self.path, resume_state, self.encode)
