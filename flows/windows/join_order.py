"""With several join shards, one batch's joined records back in one piece, in read order.

Each shard joins its part of a batch on its own, so a count window would otherwise see the
batch's joined records shard by shard (and, with several workers, in whatever order the shards'
outputs arrive). Every shard answers every batch with exactly one `JoinPart` (empty or not), in
the order it received them. Batches that one worker read reach every shard in the order that
worker sent them (Bytewax's channels between two workers keep order), so a stateful step keyed
by the reading worker (`reading_worker`) pairs the parts up (the n-th part of each shard is that
worker's n-th batch) and hands on one merged result, in the worker's read order: every shard's
running join totals (`JoinCounts`), each model's joined records merged and ordered by the
position of the half that completed them (the order one shard would have joined them in), and
dead letters shard by shard. Parts of a batch arrive in the epoch of the batch, so the step holds nothing across
epochs; its snapshot is whatever is pending anyway.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
from bytewax.operators import StatefulBatchLogic
from numpy.typing import NDArray

from flows.parsing.batches import DeadLetter, ModelColumns
from flows.parsing.labels import LabelTable
from flows.windows.join_store import JoinCounts, JoinResult

JoinOut = ModelColumns | JoinCounts | DeadLetter


@dataclass(frozen=True, slots=True)
class JoinPart:
    """What one shard made of its part of one batch read by worker ``stream``."""

    stream: str
    shard: int
    result: JoinResult


def reading_worker() -> str:
    """The worker running this step: Bytewax runs each worker on a thread of its own, for
    the life of the process. Only the pairing needs it; no state outlives an epoch under it."""
    return f"{os.getpid()}.{threading.get_ident()}"


def flatten(result: JoinResult) -> list[JoinOut]:
    """Counts first (a document emitted by the joined records already counts them seen), then
    the joined records per model, then dead letters."""
    out: list[JoinOut] = []
    out.extend(result.counts.values())
    out.extend(result.joined.values())
    out.extend(result.dead)
    return out


def merge_results(parts: list[JoinResult]) -> JoinResult:
    """One batch's results from its shards (in shard order) as one shard would give them; the
    counts stay per shard (running totals, see `JoinCounts`)."""
    merged = JoinResult()
    for part in parts:
        merged.counts.update(part.counts)
        merged.dead.extend(part.dead)
    models = [m for part in parts for m in part.joined]
    for model in dict.fromkeys(models):
        merged.joined[model] = merge_columns([p.joined[model] for p in parts if model in p.joined])
    return merged


def merge_columns(columns: list[ModelColumns]) -> ModelColumns:
    """One model's joined records from several shards, ordered by position (stable)."""
    if len(columns) == 1:
        return columns[0]
    table = LabelTable()  # the shards' label tables in one
    keys = list(dict.fromkeys(k for cols in columns for k in cols.score_keys))
    truth, pred, scores = [], [], []
    for cols in columns:
        remap = table.encode(cols.labels)
        truth.append(remap[cols.truth])
        pred.append(np.where(cols.pred >= 0, remap[np.maximum(cols.pred, 0)], cols.pred))
        block = np.full((len(cols), len(keys)), np.nan)
        if cols.scores is not None:
            block[:, [keys.index(k) for k in cols.score_keys]] = cols.scores
        scores.append(block)
    positions = np.concatenate([_positions(cols) for cols in columns])
    order = np.argsort(positions, kind="stable")
    ids = [rid for cols in columns for rid in cols.ids]
    latency = [cols.latency for cols in columns]
    first = columns[0]
    return ModelColumns(
        first.model,
        table.labels,
        np.concatenate(truth)[order],
        np.concatenate(pred)[order],
        [ids[i] for i in order.tolist()],
        np.concatenate([cols.ts for cols in columns])[order],
        first.origin,
        positions[order],
        first.headers,
        keys,
        np.concatenate(scores)[order] if keys else None,
        None
        if any(x is None for x in latency)
        else np.concatenate([x for x in latency if x is not None])[order],
    )


def _positions(cols: ModelColumns) -> NDArray[np.int64]:
    if cols.positions is None:
        raise ValueError(f"joined records of {cols.model!r} carry no positions to merge by")
    return cols.positions


class JoinOrderLogic(StatefulBatchLogic[JoinPart, JoinOut, list[list[JoinPart]]]):
    """One reading worker's batches: parts queued per shard until every shard has answered."""

    def __init__(self, shards: int, resume: list[list[JoinPart]] | None) -> None:
        self.queues: list[list[JoinPart]] = resume or [[] for _ in range(shards)]

    def on_batch(self, values: list[JoinPart]) -> tuple[list[JoinOut], bool]:
        for part in values:
            self.queues[part.shard].append(part)
        out: list[JoinOut] = []
        while all(self.queues):
            parts = [queue.pop(0).result for queue in self.queues]
            out.extend(flatten(merge_results(parts)))
        # Nothing pending (the usual end of a call): drop the key, so the keys of workers of
        # earlier runs do not linger in the recovery store.
        return out, StatefulBatchLogic.RETAIN if any(self.queues) else StatefulBatchLogic.DISCARD

    def snapshot(self) -> list[list[JoinPart]]:
        return [list(queue) for queue in self.queues]
