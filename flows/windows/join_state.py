"""The join as a Bytewax stateful operator: one `JoinStore` per shard of the id space.

Items in are ``(shard, stream, halves)``: one batch's `Halves` for this shard (every shard gets
a part of every batch, so its clock moves with the input) and the worker that read it. Items out
are joined records and join counts, keyed by model for the window step, and dead letters; with
several shards, one `JoinPart` per batch instead, which `flows.windows.join_order` puts back
together. The snapshot is the manifest of the store's segments (`flows.windows.join_log`): a
SIGKILL loses nothing and counts nothing twice, because halves read after the snapshot are read
again on resume, and the segments a manifest names are written before Bytewax commits it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from bytewax.operators import StatefulBatchLogic

from flows.parsing.batches import DeadLetter, ModelColumns
from flows.parsing.halves import Halves
from flows.telemetry import job_logger
from flows.windows.join_log import (
    GRACE_S,
    DirSegments,
    InlineSegments,
    NoSegments,
    SegmentLog,
    shard_name,
    shard_number,
)
from flows.windows.join_order import JoinPart, flatten
from flows.windows.join_store import JoinCounts, JoinSnapshot, JoinSnapshotV1, JoinStore

JoinOut = ModelColumns | JoinCounts | DeadLetter | JoinPart
log = job_logger("join")
SegmentLogFor = Callable[[int], SegmentLog]


def segment_logs(
    recovery_dir: Path | Literal["off"] | None, backup_interval_s: float = 0.0
) -> SegmentLogFor:
    """Where each shard keeps its segments: files under ``<recovery_dir>/join/shard-N/``;
    nowhere when the job runs without recovery (``"off"``); inline in the Bytewax state when
    the recovery directory is not known (None). A segment no snapshot names is kept for the
    grace or Bytewax's backup interval, whichever is longer."""
    keep_s = max(GRACE_S, backup_interval_s)

    def make(shard: int) -> SegmentLog:
        if recovery_dir == "off":
            return SegmentLog(NoSegments(), keep_s)
        if recovery_dir is None:
            return SegmentLog(InlineSegments(), keep_s)
        return SegmentLog(DirSegments(recovery_dir / "join" / shard_name(shard)), keep_s)

    return make


class JoinLogic(StatefulBatchLogic[tuple[int, str, Halves], JoinOut, JoinSnapshot]):
    """One shard's waiting halves.

    Bytewax's builder does not pass the key, so a fresh shard learns its number (and so its
    segment directory) from its first item; a resumed one from its manifest. A store resumed
    from segments carried inline, or from a version-1 snapshot, moves to its shard's segments
    at its first item (the next snapshot is a base there).
    """

    def __init__(
        self,
        ttl_ms: int,
        resume: JoinSnapshot | JoinSnapshotV1 | None,
        logs: SegmentLogFor | None = None,
        parts: bool = False,
    ) -> None:
        self.ttl = ttl_ms
        self.parts = parts
        self.logs = logs if logs is not None else segment_logs(None)
        self.store: JoinStore | None = None
        self.placed = False  # whether the store keeps its segments where its shard's go
        if resume is not None:
            in_files = resume["v"] == 2 and resume.get("inline") is None
            shard = shard_number(resume["shard"]) if in_files else 0  # type: ignore[typeddict-item]
            self.store = JoinStore.restore(ttl_ms, resume, self.logs(shard) if in_files else None)
            self.placed = in_files

    def _store(self, shard: int) -> JoinStore:
        if self.store is None:
            self.store = JoinStore(self.ttl)
        if not self.placed:
            log = self.logs(shard)
            log.clear()  # nothing resumes from it: what the directory holds is another run's
            self.store.move_to(log)
            self.store.shard = shard
            self.placed = True
        return self.store

    def on_batch(self, values: list[tuple[int, str, Halves]]) -> tuple[list[JoinOut], bool]:
        out: list[JoinOut] = []
        for shard, stream, halves in values:
            store = self._store(shard)
            result = store.step(halves)
            if self.parts:
                # Every part carries every model's totals: a record this batch joins may have
                # been counted seen in a batch another worker read, merged on another path.
                for counts in store.all_counts():
                    result.counts.setdefault((counts.model, shard), counts)
                out.append(JoinPart(stream, shard, result))
            else:
                out.extend(flatten(result))
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[JoinOut], bool]:
        store = self.store
        if store is not None and (store.waiting or store.labels):
            log.info(
                "end of input: %d predictions and %d labels still wait for their other half",
                store.waiting,
                len(store.labels),
            )
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> JoinSnapshot:
        assert self.store is not None, "Bytewax snapshots a key only after its first item"
        return self.store.snapshot()
