"""Prediction and label halves: records that wait for each other (delayed labels).

With the join on, a record without ``label`` is a *prediction half* and a record without
``predictions`` a *label half*; `parse_batch` hands them on here, column by column, in read
order. A half knows its row in the batch, so the join sees the two kinds interleaved exactly as
they were read.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import orjson
from numpy.typing import NDArray


@dataclass(slots=True)
class ModelPredictions:
    """One model's entries of prediction halves, aligned with `PredictionHalves` rows."""

    pred: NDArray[np.int32]  # codes into PredictionHalves.labels; -1: no entry for this model
    score_keys: list[str] = field(default_factory=list)
    scores: NDArray[np.float64] | None = None  # (rows, keys), NaN where a map lacks a key

    def take(self, rows: NDArray[np.int64]) -> ModelPredictions:
        return ModelPredictions(
            self.pred[rows], self.score_keys, None if self.scores is None else self.scores[rows]
        )


@dataclass(slots=True)
class PredictionHalves:
    """Prediction halves of one batch, one row per record, in read order."""

    rows: NDArray[np.int64]  # row in the batch
    ids: list[str | int]
    ts: NDArray[np.int64]
    positions: NDArray[np.int64]
    labels: list[str]  # what the models' codes index
    models: dict[str, ModelPredictions]
    run_max: NDArray[np.int64]  # see Halves

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, rows: NDArray[np.int64]) -> PredictionHalves:
        return PredictionHalves(
            self.rows[rows],
            [self.ids[i] for i in rows.tolist()],
            self.ts[rows],
            self.positions[rows],
            self.labels,
            {m: p.take(rows) for m, p in self.models.items()},
            self.run_max[rows],
        )


@dataclass(slots=True)
class LabelHalves:
    """Label halves of one batch, in read order."""

    rows: NDArray[np.int64]
    ids: list[str | int]
    labels: list[str]
    ts: NDArray[np.int64]
    positions: NDArray[np.int64]
    run_max: NDArray[np.int64]  # see Halves

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, rows: NDArray[np.int64]) -> LabelHalves:
        pick = rows.tolist()
        return LabelHalves(
            self.rows[rows],
            [self.ids[i] for i in pick],
            [self.labels[i] for i in pick],
            self.ts[rows],
            self.positions[rows],
            self.run_max[rows],
        )


def no_predictions() -> PredictionHalves:
    empty = np.zeros(0, dtype=np.int64)
    return PredictionHalves(empty, [], empty, empty, [], {}, empty)


def no_labels() -> LabelHalves:
    empty = np.zeros(0, dtype=np.int64)
    return LabelHalves(empty, [], [], empty, empty, empty)


@dataclass(slots=True)
class Halves:
    """The halves of one batch from one origin (a file or a Kafka partition).

    Each half's ``run_max`` is the newest event time among the batch's halves up to and
    including it in read order (predictions and labels merged by row), and ``batch_max`` the
    newest of the batch: the join's clock moves record by record, so batching never changes a
    verdict, and every shard learns every batch's time.
    """

    origin: str
    headers: Mapping[str, str]
    predictions: PredictionHalves
    labels: LabelHalves
    batch_max: int | None = None

    def __len__(self) -> int:
        return len(self.predictions) + len(self.labels)

    def clocked(self) -> Halves:
        """These halves with ``run_max`` and ``batch_max`` computed over the whole batch."""
        p, lab = self.predictions, self.labels
        rows = np.concatenate([p.rows, lab.rows])
        order = np.argsort(rows, kind="stable")
        ts = np.concatenate([p.ts, lab.ts])[order]
        run = np.empty_like(ts)
        if len(ts):
            run[order] = np.maximum.accumulate(ts)
        p.run_max, lab.run_max = run[: len(p)], run[len(p) :]
        self.batch_max = int(ts.max()) if len(ts) else None
        return self

    def shards(self, n: int) -> list[tuple[int, Halves]]:
        """The halves split by the shard of their id (a stable hash, the same in every
        process); every shard gets a part, empty or not, so that its clock moves."""
        if n == 1:
            return [(0, self)]
        p_shard = np.asarray([shard_of(i, n) for i in self.predictions.ids], dtype=np.int64)
        l_shard = np.asarray([shard_of(i, n) for i in self.labels.ids], dtype=np.int64)
        return [
            (
                k,
                Halves(
                    self.origin,
                    self.headers,
                    self.predictions.take(np.flatnonzero(p_shard == k)),
                    self.labels.take(np.flatnonzero(l_shard == k)),
                    self.batch_max,
                ),
            )
            for k in range(n)
        ]


def shard_of(record_id: str | int, shards: int) -> int:
    """The join shard of an id: crc32 of its JSON text (``1`` and ``"1"`` differ)."""
    return zlib.crc32(orjson.dumps(record_id)) % shards
