"""The join as a Bytewax stateful operator: one `JoinStore` per shard of the id space.

Items in are one batch's `Halves` for this shard (every shard gets a part of every batch, so its
clock moves with the input); items out are joined records and join counts, keyed by model for
the window step, and dead letters. The snapshot is the store's live rows, waiting labels and
clock: a SIGKILL loses nothing and counts nothing twice, because halves read after the
snapshot are read again on resume.
"""

from __future__ import annotations

from bytewax.operators import StatefulBatchLogic

from flows.parsing.batches import DeadLetter, ModelColumns
from flows.parsing.halves import Halves
from flows.telemetry import job_logger
from flows.windows.join_store import JoinCounts, JoinSnapshot, JoinStore

JoinOut = ModelColumns | JoinCounts | DeadLetter
log = job_logger("join")


class JoinLogic(StatefulBatchLogic[Halves, JoinOut, JoinSnapshot]):
    """One shard's waiting halves."""

    def __init__(self, ttl_ms: int, resume: JoinSnapshot | None) -> None:
        self.store = JoinStore(ttl_ms) if resume is None else JoinStore.restore(ttl_ms, resume)

    def on_batch(self, values: list[Halves]) -> tuple[list[JoinOut], bool]:
        out: list[JoinOut] = []
        for halves in values:
            result = self.store.step(halves)
            # Counts first: a document emitted by the joined records already counts them seen.
            out.extend(result.counts.values())
            out.extend(result.joined.values())
            out.extend(result.dead)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[JoinOut], bool]:
        waiting = self.store.waiting
        if waiting or self.store.labels:
            log.info(
                "end of input: %d predictions and %d labels still wait for their other half",
                waiting,
                len(self.store.labels),
            )
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> JoinSnapshot:
        return self.store.snapshot()
