"""Per-model window state as a Bytewax stateful operator: when to emit, and what survives a crash.

This is the only place the core meets Bytewax: `ModelWindowLogic` adds each batch of a model's
records to its window, emits a document whenever the model's record count crosses a multiple of
``emit_every`` (the exact record, even inside a batch), and a final one at the end of a bounded
input. Records that would take a model past ``CONFUSION_MAX_CLASSES`` labels are refused here,
as dead letters. Its snapshot is the window's versioned copy plus the last emitted count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict

import numpy as np
import orjson
from bytewax.operators import StatefulBatchLogic

from flows.errors import SnapshotError
from flows.limits import MAX_CLASSES, reached
from flows.output.documents import Document, document, now_ms
from flows.parsing.batches import DeadLetter, ModelColumns
from flows.parsing.labels import LabelTable
from flows.windows.base import SlidingWindow, WindowPolicy, WindowSnapshot

STATE_VERSION: Literal[1] = 1


class ModelState(TypedDict):
    """One model's checkpoint: its window and the ``seq`` of its last document."""

    v: Literal[1]
    model: str
    window: WindowSnapshot
    emitted_seq: int


def over_class_limit(known: LabelTable, cols: ModelColumns, limit: int) -> list[int]:
    """Rows whose labels would take the model past ``limit`` classes (truth and predictions).

    Rows are judged in read order, as if they came one by one: a row is admitted when all its
    new labels still fit, so the verdict does not depend on how the stream was batched. The
    common case (every label known, or room for all new ones) costs two bincounts.
    """
    n_labels = len(cols.labels)
    if len(known) + n_labels <= limit:  # room even if every label of the batch were new
        return []
    used = np.flatnonzero(
        np.bincount(cols.truth, minlength=n_labels) + np.bincount(cols.pred, minlength=n_labels)
    )
    new = [int(c) for c in used if cols.labels[c] not in known.index]
    if len(known) + len(new) <= limit:
        return []
    is_new = np.zeros(n_labels, dtype=bool)
    is_new[new] = True
    room = limit - len(known)
    admitted: set[int] = set()
    refused: list[int] = []
    for row in np.flatnonzero(is_new[cols.truth] | is_new[cols.pred]).tolist():
        need = {int(cols.truth[row]), int(cols.pred[row])} - admitted
        need = {c for c in need if is_new[c]}
        if len(need) <= room:
            admitted |= need
            room -= len(need)
        else:
            refused.append(row)
    return refused


def _class_letters(cols: ModelColumns, rows: list[int], limit: int) -> list[DeadLetter]:
    """Dead letters of refused rows; ``raw`` is the refused entry as a record of its own, so
    replaying it after raising the limit counts exactly what was refused."""
    letters = []
    for row in rows:
        truth, pred = cols.labels[cols.truth[row]], cols.labels[cols.pred[row]]
        reason = reached(
            "CONFUSION_MAX_CLASSES",
            f"model {cols.model!r} already holds its limit of {limit} classes "
            f"(CONFUSION_MAX_CLASSES) and this record brings a new one",
        )
        raw = orjson.dumps(
            {
                "id": cols.ids[row],
                "ts": int(cols.ts[row]),
                "label": truth,
                "predictions": {cols.model: pred},
            }
        )
        position = -1 if cols.positions is None else int(cols.positions[row])
        letters.append(DeadLetter(raw, reason, cols.origin, position, cols.model, cols.headers))
    return letters


def _without(cols: ModelColumns, rows: list[int]) -> ModelColumns:
    keep = np.ones(len(cols), dtype=bool)
    keep[rows] = False
    sel = np.flatnonzero(keep)
    return ModelColumns(
        cols.model,
        cols.labels,
        cols.truth[sel],
        cols.pred[sel],
        [cols.ids[i] for i in sel.tolist()],
        cols.ts[sel],
        cols.origin,
        None if cols.positions is None else cols.positions[sel],
        cols.headers,
    )


class ModelWindowLogic(StatefulBatchLogic[ModelColumns, Document | DeadLetter, ModelState]):
    """One model's window inside the dataflow (one instance per model key)."""

    def __init__(
        self,
        policy: WindowPolicy[Any, Any],
        emit_every: int,
        resume: ModelState | None,
        clock: Callable[[], int] = now_ms,
        max_classes: int = MAX_CLASSES,
    ) -> None:
        # Bytewax does not pass the key to the builder: the name arrives with the first batch.
        self.model = "" if resume is None else resume["model"]
        self.emit_every = emit_every
        self.max_classes = max_classes
        self.clock = clock
        self.window: SlidingWindow
        if resume is None:
            self.window = policy.new()
            self.emitted_seq = 0
        else:
            if resume.get("v") != STATE_VERSION:
                raise SnapshotError(
                    f"state of model {self.model!r} has version "
                    f"{resume.get('v')!r}, this build reads {STATE_VERSION}"
                )
            self.window = policy.restore(resume["window"])
            self.emitted_seq = resume["emitted_seq"]

    def on_batch(self, values: list[ModelColumns]) -> tuple[list[Document | DeadLetter], bool]:
        """Documents at each emission point, and dead letters of records over the class limit."""
        docs: list[Document | DeadLetter] = []
        for batch in values:
            self.model = batch.model
            refused = over_class_limit(self.window.codes, batch, self.max_classes)
            if refused:
                docs += _class_letters(batch, refused, self.max_classes)
                batch = _without(batch, refused)
            for view in self.window.add(batch, self.emit_every):
                docs.append(document(self.model, view, self.clock()))
                self.emitted_seq = view.seq
        return docs, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Document | DeadLetter], bool]:
        if self.window.seq > self.emitted_seq:
            view = self.window.view()
            self.emitted_seq = view.seq
            return [document(self.model, view, self.clock())], StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> ModelState:
        return {
            "v": STATE_VERSION,
            "model": self.model,
            "window": self.window.snapshot(),
            "emitted_seq": self.emitted_seq,
        }
