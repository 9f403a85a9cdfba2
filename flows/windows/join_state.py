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
from flows.windows.join_log import DirSegments, InlineSegments, NoSegments, SegmentLog
from flows.windows.join_order import JoinPart, flatten
from flows.windows.join_store import JoinCounts, JoinSnapshot, JoinSnapshotV1, JoinStore

JoinOut = ModelColumns | JoinCounts | DeadLetter | JoinPart
log = job_logger("join")
SegmentLogFor = Callable[[str], SegmentLog]
# A segment no snapshot names is kept this long (and for Bytewax's backup interval, if longer):
# the epoch a resume starts from may lag the newest snapshot.
SEGMENT_GRACE_S = 600.0


def segment_logs(
    recovery_dir: Path | Literal["off"] | None, keep_s: float = SEGMENT_GRACE_S
) -> SegmentLogFor:
    """Where each shard keeps its segments: files under ``<recovery_dir>/join/<shard>/``;
    nowhere when the job runs without recovery (``"off"``); inline in the Bytewax state when
    the recovery directory is not known (None)."""

    def make(shard: str) -> SegmentLog:
        if recovery_dir == "off":
            return SegmentLog(NoSegments(), keep_s)
        if recovery_dir is None:
            return SegmentLog(InlineSegments(), keep_s)
        return SegmentLog(DirSegments(recovery_dir / "join" / shard), keep_s)

    return make


class JoinLogic(StatefulBatchLogic[tuple[int, str, Halves], JoinOut, JoinSnapshot]):
    """One shard's waiting halves.

    Bytewax's builder does not pass the key, so a fresh shard learns its name (and so its
    segment directory) from its first item; a resumed one from its manifest.
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
        self.shard = ""
        self.store: JoinStore | None = None
        if resume is not None:
            self.shard = str(resume.get("shard", ""))
            inline = resume.get("inline") if resume.get("v") == 2 else None
            segments = None if inline is not None or not self.shard else self.logs(self.shard)
            self.store = JoinStore.restore(ttl_ms, resume, segments)
            if self.shard.startswith("shard-"):
                self.store.shard = int(self.shard.removeprefix("shard-"))

    def _store(self, number: int) -> JoinStore:
        shard = f"shard-{number}"
        if self.store is not None and not self.shard:
            # Resumed from a version-1 snapshot, which names no shard: from now on, segments.
            self.shard = shard
            log = self.logs(shard)
            log.clear()
            self.store.move_to(log)
        if self.store is None:
            self.shard = shard
            segments = self.logs(shard)
            segments.clear()  # nothing to resume: what the directory holds is another run's
            self.store = JoinStore(self.ttl, segments)
        self.store.shard = number
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
        return self.store.snapshot(self.shard)
