"""JSON-lines files: a resumable source of raw batches and an exactly-once sink.

The source hands the dataflow one `RawBatch` per poll instead of one item per line, which keeps
Bytewax's per-item cost off the per-record path. The sink truncates its file back to the last
snapshot's offset when it resumes, so what a crash replays is written once, not twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.limits import MAX_RECORD_BYTES
from flows.output.documents import now_ms
from flows.parsing.batches import RawBatch
from flows.telemetry import Heartbeat

X = TypeVar("X")
JSON_WHITESPACE = b" \t\r\n"  # RFC 8259 whitespace; bytes.strip() would also take \x0b \x0c


# Bytes the source reads per system call: the default 8 KiB buffer costs a read every two lines
# of a 4 KB record (10 models x 20 classes of scores).
READ_BUFFER = 1 << 20


def _read_lines(f: BinaryIO, n: int, max_bytes: int) -> list[bytes]:
    """Up to ``n`` lines without their line ends, none longer than ``max_bytes`` + 1.

    A longer line is cut there (and not stripped, so it stays too long) and the rest of it is
    skipped without being held: the parser refuses it for CONFUSION_MAX_RECORD_BYTES, and a
    line of gigabytes cannot take the job's memory on the way.
    """
    readline = f.readline
    cap = max_bytes + 2  # room for the content, one byte over, and the line end
    lines = []
    for _ in range(n):
        line = readline(cap)
        if not line:
            break
        if len(line) == cap and not line.endswith(b"\n"):
            while (rest := readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            lines.append(line[: max_bytes + 1])
        else:
            lines.append(line.rstrip(b"\r\n"))
    return lines


class _LinesPartition(StatefulSourcePartition[RawBatch, tuple[int, int]]):
    def __init__(
        self,
        path: Path,
        batch_size: int,
        resume: tuple[int, int] | None,
        heartbeat: Heartbeat,
        max_bytes: int,
    ) -> None:
        self._path = path
        self._f = path.open("rb", buffering=READ_BUFFER)
        self._offset, self._line = resume or (0, 0)
        self._f.seek(self._offset)
        self._batch_size = batch_size
        self._heartbeat = heartbeat
        self._ended = False
        self._max_bytes = max_bytes

    def next_batch(self) -> list[RawBatch]:
        self._heartbeat.beat()
        lines = _read_lines(self._f, self._batch_size, self._max_bytes)
        if not lines:
            if self._ended:
                raise StopIteration
            self._ended = True  # one empty batch says "end reached" (see connectors.console)
            return [RawBatch([], [], str(self._path), [])]
        first = self._line + 1
        self._line += len(lines)
        self._offset = self._f.tell()
        values = lines
        positions = list(range(first, first + len(values)))
        if b"" in values or any(map(bytes.isspace, values)):  # a blank line holds no record
            # Blank means JSON whitespace only: a line of \x0b or \x0c is a broken record.
            kept = [
                (v, p) for v, p in zip(values, positions, strict=True) if v.strip(JSON_WHITESPACE)
            ]
            values, positions = [v for v, _ in kept], [p for _, p in kept]
        arrival = now_ms()
        return [RawBatch(values, [arrival] * len(values), str(self._path), positions)]

    def snapshot(self) -> tuple[int, int]:
        return (self._offset, self._line)

    def close(self) -> None:
        self._f.close()


class JsonLinesSource(FixedPartitionedSource[RawBatch, tuple[int, int]]):
    """Reads a JSON-lines file in batches; resumes at the byte offset of its last snapshot.

    ``more`` are further files read beside it, one partition each (the labels file of
    ``CONFUSION_LABELS_INPUT``); the partition is named by the path.
    """

    def __init__(
        self,
        path: Path,
        batch_size: int,
        heartbeat: Heartbeat | None = None,
        max_bytes: int = MAX_RECORD_BYTES,
        more: tuple[Path, ...] = (),
    ) -> None:
        self.path = path
        self.more = more
        self.batch_size = batch_size
        self.heartbeat = heartbeat or Heartbeat(None)
        self.max_bytes = max_bytes

    def list_parts(self) -> list[str]:
        return list(dict.fromkeys(str(p) for p in (self.path, *self.more)))

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[int, int] | None
    ) -> _LinesPartition:
        return _LinesPartition(
            Path(for_part), self.batch_size, resume_state, self.heartbeat, self.max_bytes
        )


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

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _JsonLinesPartition[X]:
        return _JsonLinesPartition(self.path, resume_state, self.encode)
