"""Where the join's snapshot bytes go: a base and a log of deltas, so an epoch costs what changed.

Bytewax 0.21 pickles and stores the whole state of every key touched in an epoch, and a join
shard is touched every epoch (every batch moves its clock). Handing it the waiting rows would
write all of them every epoch (65 MB at 1,000,000 waiting). So the rows live in *segments*: one
base (every row, written when the log has grown past it or the rows were renumbered) and deltas
(rows appended since the last snapshot, rows whose state changed, label changes). The Bytewax
state is the manifest: the segments' names, in order, and the small parts (label table, clock).

Segments are immutable and named by a per-shard sequence number. With a recovery directory they
are files under ``<recovery dir>/join/<shard>/``, written (and fsynced) before `snapshot` returns,
so before Bytewax commits the manifest that names them; resuming from epoch E reads the files E's
manifest names and removes those numbered after it (written by the run that crashed). A segment
that no manifest names any more is removed once it has been unnamed for ``keep_s`` seconds and
three snapshots, so a resume from a slightly older epoch (the commit lags the snapshot) still
finds it. Without a directory (a test or embedding that runs with recovery but does not say
where) the segments ride inline in the manifest: correct, but every epoch then hands them all to
Bytewax. A job known to run without recovery makes no segment (`NoSegments`).

Small deltas are merged as they pile up (the last two, whenever the older is not more than twice
the newer, by concatenating their bytes: a segment is a stream of pickles), so a manifest names
O(log) segments and a byte of the log is rewritten O(log) times.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from flows.errors import SnapshotError

_NAME = re.compile(r"^(\d{12})\.(base|delta)$")
RETIRE_SNAPSHOTS = 3  # a retired segment outlives this many snapshots, whatever its age
# ... and this many seconds at least (or Bytewax's backup interval, if longer): the epoch a
# resume starts from may lag the newest snapshot.
GRACE_S = 600.0


def shard_name(shard: int) -> str:
    """A join shard's name: its state key, its segment directory, its manifest's ``shard``."""
    return f"shard-{shard}"


def shard_number(name: str) -> int:
    return int(name.removeprefix("shard-"))


def segment_name(seq: int, kind: str) -> str:
    return f"{seq:012d}.{kind}"


class Segments(Protocol):
    """Where segment bytes are kept."""

    def write(self, name: str, data: bytes) -> None: ...

    def read(self, name: str) -> bytes: ...

    def remove(self, name: str) -> None: ...

    def names(self) -> list[str]: ...

    def inline(self, names: list[str]) -> dict[str, bytes] | None:
        """The bytes to carry in the manifest (None when the segments are kept elsewhere)."""
        ...


class InlineSegments:
    """Segments held in memory and carried in the manifest (no recovery directory known)."""

    def __init__(self, blobs: dict[str, bytes] | None = None) -> None:
        self.blobs: dict[str, bytes] = dict(blobs or {})

    def write(self, name: str, data: bytes) -> None:
        self.blobs[name] = data

    def read(self, name: str) -> bytes:
        try:
            return self.blobs[name]
        except KeyError:
            raise SnapshotError(
                f"join snapshot names segment {name} but does not carry it"
            ) from None

    def remove(self, name: str) -> None:
        self.blobs.pop(name, None)

    def names(self) -> list[str]:
        return list(self.blobs)

    def inline(self, names: list[str]) -> dict[str, bytes] | None:
        return {name: self.blobs[name] for name in names}


class NoSegments:
    """A job without recovery: Bytewax still asks for snapshots, but nothing will resume from
    them, so no segment is made at all (`SegmentLog.keeps` is False)."""

    def write(self, name: str, data: bytes) -> None:
        raise AssertionError("a job without recovery writes no segment")

    def read(self, name: str) -> bytes:
        raise SnapshotError(
            "this join checkpoint was taken by a job running without recovery (no -r): it holds "
            "no rows to resume from"
        )

    def remove(self, name: str) -> None:
        pass

    def names(self) -> list[str]:
        return []

    def inline(self, names: list[str]) -> dict[str, bytes] | None:
        return None


class DirSegments:
    """Segments as files in one shard's directory beside the recovery partitions."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, data: bytes) -> None:
        path = self.dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename too, before Bytewax commits the manifest naming it
        finally:
            os.close(fd)

    def read(self, name: str) -> bytes:
        path = self.dir / name
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise SnapshotError(
                f"join snapshot names {path}, which is missing: the recovery directory was "
                "copied or restored without its join/ folder (keep join/ with the part-*.sqlite3 "
                "files)"
            ) from None

    def remove(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        return [p.name for p in self.dir.iterdir() if _NAME.match(p.name) or p.suffix == ".tmp"]

    def inline(self, names: list[str]) -> dict[str, bytes] | None:
        return None


@dataclass(slots=True)
class SegmentLog:
    """The segments one manifest names (base first), and those retired from it."""

    store: Segments
    keep_s: float = GRACE_S
    seq: int = 0
    names: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    retired: list[tuple[str, float, int]] = field(default_factory=list)
    snapshots: int = 0
    written: int = 0  # bytes written since the log was made (for benchmarks and tests)

    @property
    def keeps(self) -> bool:
        """Whether snapshots are kept at all (False: the job runs without recovery)."""
        return not isinstance(self.store, NoSegments)

    @property
    def base_bytes(self) -> int:
        return self.sizes[0] if self.sizes else 0

    @property
    def log_bytes(self) -> int:
        return sum(self.sizes[1:])

    def _put(self, kind: str, data: bytes) -> str:
        self.seq += 1
        name = segment_name(self.seq, kind)
        self.store.write(name, data)
        self.written += len(data)
        return name

    def _retire(self, names: list[str]) -> None:
        now = time.monotonic()
        self.retired.extend((name, now, self.snapshots) for name in names)

    def rebase(self, data: bytes) -> None:
        """A new base replaces the base and every delta."""
        name = self._put("base", data)
        self._retire(self.names)
        self.names, self.sizes = [name], [len(data)]

    def append(self, data: bytes) -> None:
        """A delta after the others; merge the last ones while the older is not much bigger."""
        self.names.append(self._put("delta", data))
        self.sizes.append(len(data))
        while len(self.names) > 2 and self.sizes[-2] <= 2 * self.sizes[-1]:
            older, newer = self.names[-2], self.names[-1]
            merged = self.store.read(older) + self.store.read(newer)
            name = self._put("delta", merged)
            self._retire([older, newer])
            self.names[-2:] = [name]
            self.sizes[-2:] = [len(merged)]

    def collect(self) -> None:
        """Remove retired segments old enough that no resumable manifest can name them."""
        self.snapshots += 1
        now = time.monotonic()
        keep: list[tuple[str, float, int]] = []
        for name, when, at in self.retired:
            if now - when >= self.keep_s and self.snapshots - at >= RETIRE_SNAPSHOTS:
                self.store.remove(name)
            else:
                keep.append((name, when, at))
        self.retired = keep

    def adopt(self, seq: int, names: list[str], sizes: list[int]) -> None:
        """Resume from a manifest: remove what was written after it, retire what it does not name."""
        self.seq, self.names, self.sizes = seq, list(names), list(sizes)
        named = set(names)
        stale: list[str] = []
        for name in self.store.names():
            match = _NAME.match(name)
            if match is None or int(match.group(1)) > seq:
                self.store.remove(name)  # a half-written file, or the crashed run's future
            elif name not in named:
                stale.append(name)
        self._retire(sorted(stale))

    def clear(self) -> None:
        """A fresh shard (nothing to resume): whatever its directory holds is from another run."""
        for name in self.store.names():
            self.store.remove(name)

    def read_all(self) -> Iterator[bytes]:
        for name in self.names:
            yield self.store.read(name)
